# Sourced by run.sh and test.sh: make (or refresh) a virtual environment from a requirements file.
# usage: ensure_venv <folder> <requirements file>
ensure_venv() {
    local venv="$1" requirements="$2" stamp
    stamp="$venv/.installed-$(cat requirements/*.txt training/requirements.txt */*/pyproject.toml training/pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
    fi
    if [ ! -e "$stamp" ]; then
        echo "installing $requirements into $venv" >&2
        # this machine's pip configuration names optional local indexes that may be absent: drop that noise
        "$venv/bin/python" -m pip install --quiet --upgrade pip 2> >(grep -v "is ignored: it is neither" >&2)
        "$venv/bin/python" -m pip install --quiet -r "$requirements" 2> >(grep -v "is ignored: it is neither" >&2) || return 1
        rm -f "$venv"/.installed-* && touch "$stamp"
    fi
}
