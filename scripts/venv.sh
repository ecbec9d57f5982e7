# Sourced by run.sh and test.sh: make (or refresh) a virtual environment from a requirements file.
# usage: ensure_venv <folder> <requirements file>
ensure_venv() {
    local venv="$1" requirements="$2" stamp
    stamp="$venv/.installed-$(cat requirements/*.txt training/requirements.txt */*/pyproject.toml training/pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
    fi
    if [ ! -e "$stamp" ]; then
        "$venv/bin/python" -m pip install --quiet --upgrade pip
        "$venv/bin/python" -m pip install --quiet -r "$requirements" || return 1
        rm -f "$venv"/.installed-* && touch "$stamp"
    fi
}
