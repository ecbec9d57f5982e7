// What the admin tables share: loading, error and empty states, and row actions (disable an account, ...).
import { el, roles, showMessage } from "../dom.js";
import { formatDateTime } from "../format.js";
import { errorMessage } from "../messages.js";

/**
 * A table in `container` (with data-role table, loading, error and optionally empty) that shows
 * what `fetchRows` returns: a Promise of <tr> elements. Returns { load, clear }.
 */
export function createTableLoader(container, fetchRows) {
  const { table, loading, error, empty } = roles(container, "table", "loading", "error", "empty");
  const rows = table.querySelector("tbody");
  let generation = 0;

  async function load() {
    const run = ++generation;
    loading.hidden = false;
    showMessage(error, "");
    try {
      const rendered = await fetchRows();
      if (run !== generation) return;
      rows.replaceChildren(...rendered);
      table.hidden = rendered.length === 0;
      if (empty) empty.hidden = rendered.length > 0;
    } catch (failure) {
      if (run === generation) showMessage(error, errorMessage(failure));
    } finally {
      if (run === generation) loading.hidden = true;
    }
  }

  function clear() {
    generation += 1;
    rows.replaceChildren();
    table.hidden = true;
    showMessage(error, "");
  }

  return { load, clear, showError: (failure) => showMessage(error, errorMessage(failure)) };
}

/** Active or Disabled, as a tag. */
export function statusCell(isActive) {
  return el(
    "td",
    {},
    el("span", { className: `tag ${isActive ? "tag--negative" : "tag--neutral"}`, textContent: isActive ? "Active" : "Disabled" }),
  );
}

export function dateCell(isoString) {
  return el("td", { textContent: formatDateTime(isoString) });
}

/** A "Disable" button for an active account that asks first (API clients cannot be enabled again). */
export function disableCell(account, name, disable) {
  if (!account.is_active) return el("td");
  return el("td", { className: "row-actions" }, rowAction("Disable", name, disable, {
    danger: true,
    confirm: `Disable ${name}? Its sign-ins and tokens stop working at once, and it cannot be enabled again.`,
  }));
}

/** A small row button labelled "<text> <name>" for screen readers, which may ask first and waits for `act`. */
export function rowAction(text, name, act, { danger = false, confirm = null } = {}) {
  const className = `button button--small${danger ? " button--danger" : ""}`;
  const button = el("button", { type: "button", className, textContent: text });
  button.setAttribute("aria-label", `${text} ${name}`);
  button.addEventListener("click", () => {
    if (confirm && !window.confirm(confirm)) return;
    button.disabled = true;
    act().finally(() => (button.disabled = false));
  });
  return button;
}
