// Admin: the audit log, newest first, filtered by actor, action and date range, a page at a time; a CSV export.
import * as api from "../api.js";
import { clearFields, el } from "../dom.js";
import { dayRange, formatDateTime } from "../format.js";
import { createPager } from "./pager.js";
import { createTableLoader } from "./table.js";

const PAGE_SIZE = 50;
const OUTCOME_TONES = { success: "negative", failure: "positive", denied: "positive" };

export function createAuditView(section) {
  const form = section.querySelector("[data-role=filters]");
  const actions = section.querySelector("#audit-actions");
  const knownActions = new Set();
  let offset = 0;
  const pager = createPager(section.querySelector("[data-role=pager]"), {
    onOffset(value) {
      offset = value;
      table.load();
    },
  });
  const table = createTableLoader(section, async () => {
    const page = await api.listAuditEvents({ ...filters(), limit: PAGE_SIZE, offset });
    pager.show(page);
    for (const event of page.items) knownActions.add(event.action);
    actions.replaceChildren(...[...knownActions].sort().map((action) => el("option", { value: action })));
    return page.items.map(renderRow);
  });

  function filters() {
    const values = Object.fromEntries(new FormData(form));
    return { actor: values.actor.trim(), action: values.action.trim(), ...dayRange(values.since, values.until) };
  }

  function renderRow(event) {
    const actor = event.actor_name ?? event.actor_id ?? "unknown";
    return el(
      "tr",
      {},
      el("td", { className: "nowrap", textContent: formatDateTime(event.occurred_at, { seconds: true }) }),
      el("td", { textContent: event.actor_kind === "client" ? `${actor} (API client)` : actor }),
      el("td", {}, el("code", { textContent: event.action })),
      el("td", { className: "wrap-anywhere", textContent: event.target ?? "" }),
      el(
        "td",
        {},
        el("span", { className: `tag tag--${OUTCOME_TONES[event.outcome] ?? "neutral"}`, textContent: event.outcome }),
        event.detail ? el("span", { className: "cell-note", textContent: event.detail }) : "",
      ),
      el("td", { textContent: event.ip ?? "" }),
    );
  }

  function reload() {
    offset = 0;
    table.load();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    reload();
  });
  form.addEventListener("reset", () => setTimeout(reload)); // after the fields are cleared
  section.querySelector("[data-role=refresh]").addEventListener("click", () => table.load());
  section.querySelector("[data-role=export]").addEventListener("click", () =>
    api.downloadCsv("/audit/export.csv", filters()).catch((failure) => table.showError(failure)),
  );

  return {
    load: reload,
    reset() {
      clearFields(form);
      knownActions.clear();
      pager.clear();
      table.clear();
    },
  };
}
