"""Sufficient contrast (WCAG 2.1 AA, 1.4.3) on the main screens at laptop width: 4.5:1 for normal text,
3:1 for large text (>= 24px, or >= 18.66px bold). Disabled controls are exempt."""

from __future__ import annotations

import re

import pytest
from e2e_steps import case_of, choose_files, classify, expect, go_to, sign_in, sign_in_as_admin

# Defines window.__contrast = { ratio(fg, bg), check() }; check() returns the failures on the page now.
CONTRAST_JS = """() => {
    const parse = (css) => {
        const m = css.match(/rgba?\\(\\s*([\\d.]+)[,\\s]+([\\d.]+)[,\\s]+([\\d.]+)(?:\\s*[,/]\\s*([\\d.]+%?))?\\s*\\)/);
        if (!m) return null;
        let a = m[4] === undefined ? 1 : m[4].endsWith('%') ? parseFloat(m[4]) / 100 : parseFloat(m[4]);
        return [+m[1], +m[2], +m[3], a];
    };
    const over = (top, bottom) => {  // source-over compositing onto an opaque colour
        const a = top[3];
        return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat(1);
    };
    const luminance = ([r, g, b]) => {
        const lin = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
        return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
    };
    const ratio = (fg, bg) => {
        const fgc = typeof fg === 'string' ? parse(fg) : fg, bgc = typeof bg === 'string' ? parse(bg) : bg;
        const [l1, l2] = [luminance(fgc), luminance(bgc)].sort((x, y) => y - x);
        return (l1 + 0.05) / (l2 + 0.05);
    };
    const hex = (c) => '#' + c.slice(0, 3).map((v) => Math.round(v).toString(16).padStart(2, '0')).join('');
    // The colour behind an element: its own and its ancestors' backgrounds composited over white;
    // null if an image lies behind it (no single colour to measure against).
    const background = (element) => {
        const layers = [];
        for (let node = element; node && node.nodeType === 1; node = node.parentElement) {
            const style = getComputedStyle(node);
            if (style.backgroundImage !== 'none') return null;
            const colour = parse(style.backgroundColor);
            if (colour && colour[3] > 0) {
                layers.push(colour);
                if (colour[3] >= 1) break;
            }
        }
        return layers.reverse().reduce((below, layer) => over(layer, below), [255, 255, 255, 1]);
    };
    const describe = (element) => {
        const parts = [];
        for (let node = element; node && node.nodeType === 1 && parts.length < 4; node = node.parentElement) {
            let part = node.tagName.toLowerCase();
            if (node.id) { parts.unshift(part + '#' + node.id); break; }
            if (node.classList.length) part += '.' + [...node.classList].join('.');
            parts.unshift(part);
        }
        return parts.join(' > ');
    };
    const visible = (element) => {
        const rects = element.getClientRects();
        if (!rects.length) return false;
        const box = element.getBoundingClientRect();
        if (box.width <= 1 && box.height <= 1) return false;  // visually hidden, for screen readers only
        const style = getComputedStyle(element);
        if (style.visibility !== 'visible' || parseFloat(style.opacity) === 0) return false;
        if (element.closest('[aria-hidden=true], .visually-hidden')) return false;
        return true;
    };
    const check = () => {
        const failures = [];
        let checked = 0;
        for (const element of document.body.querySelectorAll('*')) {
            if (['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'OPTION'].includes(element.tagName)) continue;
            const ownText = [...element.childNodes]
                .filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join('').trim();
            if (!ownText || !visible(element)) continue;
            if (element.matches(':disabled') || element.closest(':disabled, [aria-disabled=true]')) continue;
            const bg = background(element);
            if (!bg) continue;
            const style = getComputedStyle(element);
            // Opacity on the element or an ancestor fades its text into what lies behind it.
            let opacity = 1;
            for (let node = element; node && node.nodeType === 1; node = node.parentElement) {
                opacity *= parseFloat(getComputedStyle(node).opacity);
            }
            const text = parse(style.color);
            const fg = over([text[0], text[1], text[2], text[3] * opacity], bg);
            const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight, 10) >= 700;
            const large = size >= 24 || (bold && size >= 18.66);
            const needed = large ? 3 : 4.5;
            const value = ratio(fg, bg);
            checked += 1;
            if (value < needed) {
                failures.push({
                    element: describe(element), text: ownText.slice(0, 40),
                    color: hex(fg), background: hex(bg), ratio: Math.round(value * 100) / 100,
                    needed, fontSize: size, fontWeight: style.fontWeight,
                });
            }
        }
        return { checked, failures };
    };
    window.__contrast = { ratio, check };
}"""


def check_contrast(page, screen: str) -> int:
    """Asserts that all visible text on the page has sufficient contrast; returns how many elements were checked."""
    page.evaluate(CONTRAST_JS)
    result = page.evaluate("() => window.__contrast.check()")
    failures = "\n".join(
        f"  {f['element']} {f['text']!r}: {f['color']} on {f['background']} = {f['ratio']}:1 "
        f"(needs {f['needed']}:1; {f['fontSize']}px, weight {f['fontWeight']})"
        for f in result["failures"]
    )
    assert result["failures"] == [], f"insufficient contrast on the {screen} screen:\n{failures}"
    assert result["checked"] > 0, f"no text checked on the {screen} screen"
    return result["checked"]


@pytest.mark.parametrize(
    ("foreground", "background", "expected"),
    [
        ("rgb(0, 0, 0)", "rgb(255, 255, 255)", 21.0),
        ("rgb(255, 255, 255)", "rgb(0, 0, 0)", 21.0),
        ("rgb(119, 119, 119)", "rgb(255, 255, 255)", 4.48),  # #777 on white: just too low for normal text
        ("rgb(118, 118, 118)", "rgb(255, 255, 255)", 4.54),  # #767676: the lightest grey that passes
        ("rgb(255, 255, 255)", "rgb(255, 255, 255)", 1.0),
    ],
)
def test_the_contrast_function_gives_the_wcag_ratio(page, foreground, background, expected):
    page.goto("/")
    page.evaluate(CONTRAST_JS)
    assert page.evaluate("([fg, bg]) => window.__contrast.ratio(fg, bg)", [foreground, background]) == pytest.approx(
        expected, abs=0.01
    )


def test_the_check_finds_text_with_too_little_contrast(page):
    """Grey text at 4.48:1, light text on a translucent dark layer over white and text faded by opacity are
    caught; large text
    at 3:1, disabled controls and text over a background image are not."""
    page.goto("/")
    page.evaluate(
        """() => {  // styles set through the CSSOM: the app's CSP blocks style attributes in markup
            const add = (parent, tag, css, text = '', attributes = {}) => {
                const element = document.createElement(tag);
                element.style.cssText = css;
                element.textContent = text;
                for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
                parent.append(element);
                return element;
            };
            const probe = add(document.body, 'div', 'background: #fff; color: #000; padding: 1rem', '', { id: 'probe' });
            document.body.prepend(probe);
            add(probe, 'p', 'color: #777; font-size: 16px', 'grey on white');
            add(probe, 'p', 'color: #777; font-size: 24px', 'large grey on white');
            add(probe, 'p', 'color: #949494; font-size: 19px; font-weight: 700', 'bold grey, 3:1');
            add(add(probe, 'div', 'background: rgb(0 0 0 / 0.1)'), 'span', 'color: #ccc', 'on a veil');
            add(probe, 'button', 'color: #ccc; background: #fff', 'Disabled', { disabled: '' });
            add(add(probe, 'span', '', '', { 'aria-disabled': 'true' }), 'a', 'color: #ddd', 'Unavailable');
            add(add(probe, 'div', 'background: #fff linear-gradient(#000, #000)'), 'span', 'color: #111', 'on an image');
            add(add(probe, 'div', 'opacity: 0.5'), 'span', 'color: #000', 'faded');
        }"""
    )
    page.evaluate(CONTRAST_JS)
    failures = page.evaluate("() => window.__contrast.check().failures")
    failed = {failure["text"]: failure for failure in failures}
    assert "grey on white" in failed, failures
    assert failed["grey on white"]["ratio"] == pytest.approx(4.48, abs=0.01)
    assert failed["grey on white"]["element"] == "div#probe > p"
    assert "on a veil" in failed, failures  # #ccc on white darkened by 10% black: still too low
    assert failed["on a veil"]["background"] == "#e6e6e6"
    assert failed["faded"]["color"] == "#808080", failures  # black at half opacity on white
    for passing in ("large grey on white", "bold grey, 3:1", "Disabled", "Unavailable", "on an image"):
        assert passing not in failed, failures
    with pytest.raises(AssertionError, match="grey on white"):
        check_contrast(page, "probe")


def test_the_sign_in_page_has_sufficient_contrast(page, gateway):
    page.goto("/")
    expect(page.locator("#login")).to_be_visible()
    check_contrast(page, "sign-in")
    sign_in(page, gateway.admin_username, "not-the-password")
    expect(page.get_by_role("alert")).to_have_text("The username or password is not correct.")
    check_contrast(page, "sign-in with an error")

    # The app's own muted text, one shade lighter than #767676, is caught.
    page.evaluate("() => document.documentElement.style.setProperty('--ink-muted', '#777777')")
    with pytest.raises(AssertionError, match=r"p\.muted 'Decision support for chest images.*#777777 on #ffffff = 4\.48:1"):
        check_contrast(page, "sign-in with lighter muted text")


def test_the_workspace_pages_have_sufficient_contrast(page, gateway, sample_xrays):
    path = sample_xrays["pneumonia"][0]
    sign_in_as_admin(page, gateway)
    check_contrast(page, "empty classify")

    choose_files(page, path)
    expect(case_of(page, path.name)).to_be_visible()
    [answer] = classify(page)
    assert answer["status"] == 201, answer
    expect(case_of(page, path.name).locator(".finding")).to_be_visible()
    check_contrast(page, "classify with a result")

    go_to(page, "History")
    expect(page.locator("#history tbody tr").first).to_be_visible()
    check_contrast(page, "history")

    go_to(page, "Users")
    own_row = re.compile(rf"^{re.escape(gateway.admin_username)}(?![\w-])")  # not admin-... accounts
    expect(page.locator("#users").get_by_role("row").filter(has_text=own_row)).to_be_visible()
    check_contrast(page, "users")
