// The history page: past results with filters (label, dates, model, unusual images), sortable columns and pages.
import * as api from "../api.js";
import { clearFields, el, roles, showMessage } from "../dom.js";
import { dayRange, formatDateTime, formatPercent } from "../format.js";
import { resultImageUrl } from "../images.js";
import { describeClass, headlineClassName, headlineProbability, modelName } from "../labels.js";
import { errorMessage } from "../messages.js";
import { createPager } from "./pager.js";
import { warningTags } from "./result.js";

const PAGE_SIZE = 20;
const COLUMNS = { created_at: "Time", label: "Result", model_name: "Model" };
const FIRST_DIRECTION = { created_at: "-", label: "", model_name: "" }; // newest first; names A to Z

export function createHistoryView(section, { onOpen }) {
  const { filters: form, table, loading, error, empty } = roles(section, "filters", "table", "loading", "error", "empty");
  const rows = table.querySelector("tbody");
  const models = section.querySelector("#history-models");
  const pager = createPager(section.querySelector("[data-role=pager]"), { onOffset: (value) => load({ offset: value }) });

  const sortButtons = [...table.querySelectorAll("th[data-sort]")].map((header) => {
    const column = header.dataset.sort;
    const button = el("button", { type: "button", className: "sort-button", textContent: COLUMNS[column] });
    button.addEventListener("click", () => {
      const flipped = sort === column ? `-${column}` : sort === `-${column}` ? column : null;
      load({ sort: flipped ?? FIRST_DIRECTION[column] + column, offset: 0 });
    });
    header.append(button);
    return header;
  });

  let sort = "-created_at";
  let offset = 0;
  let generation = 0; // bumps on every load and reset; stale responses are dropped
  const knownModels = new Set();
  const knownFindings = new Map(); // label -> finding, from the results seen: the labels of every model shown
  const thumbnails = new IntersectionObserver(loadVisibleThumbnails, { rootMargin: "200px" });
  const resultOfThumbnail = new WeakMap();

  function filters() {
    const { label, model, ood, since, until } = Object.fromEntries(new FormData(form));
    return { label, model: model.trim(), ood, ...dayRange(since, until) };
  }

  function hasFilters() {
    return Object.values(filters()).some(Boolean);
  }

  async function load(changes = {}) {
    sort = changes.sort ?? sort;
    offset = changes.offset ?? offset;
    const run = ++generation;
    section.setAttribute("aria-busy", "true");
    showMessage(error, "");
    loading.hidden = false;
    try {
      const page = await api.listResults({ ...filters(), sort, limit: PAGE_SIZE, offset });
      if (run === generation) render(page);
    } catch (failure) {
      if (run === generation) showMessage(error, errorMessage(failure));
    } finally {
      if (run === generation) {
        section.removeAttribute("aria-busy");
        loading.hidden = true;
      }
    }
  }

  function render(page) {
    thumbnails.disconnect();
    rows.replaceChildren(...page.items.map(renderRow));
    table.hidden = page.items.length === 0;
    showEmpty(page.items.length === 0);
    pager.show(page);
    showSort();
    for (const result of page.items) knownModels.add(result.model_name);
    models.replaceChildren(...[...knownModels].sort().map((name) => el("option", { value: name })));
    showKnownFindings(page.items);
  }

  function showKnownFindings(results) {
    for (const result of results) {
      for (const { label, finding } of result.classes ?? []) knownFindings.set(label, finding);
    }
    const select = form.elements.label;
    const chosen = select.value;
    const options = [...knownFindings].sort(([, a], [, b]) => a.localeCompare(b));
    select.replaceChildren(
      el("option", { value: "", textContent: "Any result" }),
      ...options.map(([label, finding]) => el("option", { value: label, textContent: finding })),
    );
    select.value = chosen;
  }

  function showEmpty(isEmpty) {
    empty.hidden = !isEmpty;
    const filtered = hasFilters();
    empty.querySelector("[data-role=empty-title]").textContent = filtered
      ? "No results match these filters."
      : "No classifications yet.";
    empty.querySelector("[data-role=empty-hint]").textContent = filtered
      ? "Change or clear the filters to see more results."
      : "Results appear here once an image has been classified.";
  }

  function showSort() {
    for (const header of sortButtons) {
      const column = header.dataset.sort;
      const direction = sort === column ? "ascending" : sort === `-${column}` ? "descending" : "none";
      header.setAttribute("aria-sort", direction);
    }
  }

  function renderRow(result) {
    const finding = describeClass(result);
    const thumbnail = el("img", { className: "thumbnail", alt: "", width: 56, height: 56 });
    resultOfThumbnail.set(thumbnail, result);
    thumbnails.observe(thumbnail);
    const open = el(
      "button",
      { type: "button", className: "link-button" },
      formatDateTime(result.created_at),
      el("span", { className: "visually-hidden", textContent: ", open details" }),
    );
    open.addEventListener("click", () => onOpen(result));
    const row = el(
      "tr",
      {},
      el("td", {}, thumbnail),
      el("td", {}, open),
      el(
        "td",
        {},
        el(
          "span",
          { className: "tags" },
          el("span", { className: `tag tag--${finding.tone}`, textContent: finding.finding }),
          ...warningTags(result),
        ),
      ),
      el("td", {
        className: "numeric",
        textContent: formatPercent(headlineProbability(result)),
        title: `Probability of ${headlineClassName(result).toLowerCase()}`,
      }),
      el("td", { textContent: modelName(result) }),
      el("td", { textContent: result.created_by }),
    );
    row.dataset.resultId = result.id;
    // The whole row is a mouse target too; keyboard users use the button in it.
    row.addEventListener("click", (event) => {
      if (!event.target.closest("button")) onOpen(result);
    });
    return row;
  }

  function loadVisibleThumbnails(entries) {
    for (const entry of entries.filter((item) => item.isIntersecting)) {
      thumbnails.unobserve(entry.target);
      resultImageUrl(resultOfThumbnail.get(entry.target).id).then(
        (url) => (entry.target.src = url),
        () => entry.target.classList.add("is-missing"),
      );
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load({ offset: 0 });
  });
  // After the reset has cleared the fields.
  form.addEventListener("reset", () => setTimeout(() => load({ offset: 0 })));
  section.querySelector("[data-role=refresh]").addEventListener("click", () => load());
  // administrators: the results these filters list, as a CSV file
  section.querySelector("[data-role=export]").addEventListener("click", () =>
    api.downloadCsv("/results/export.csv", { ...filters(), sort }).catch((failure) => showMessage(error, errorMessage(failure))),
  );

  return {
    /** Loads the current page with the current filters. */
    load,
    reset() {
      generation += 1;
      clearFields(form);
      sort = "-created_at";
      offset = 0;
      knownModels.clear();
      knownFindings.clear();
      thumbnails.disconnect();
      rows.replaceChildren();
      table.hidden = true;
      empty.hidden = true;
      pager.clear();
      showMessage(error, "");
    },
  };
}
