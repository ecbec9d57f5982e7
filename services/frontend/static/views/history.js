// The table of past results, newest first, a page at a time; thumbnails load when scrolled into view.
import * as api from "../api.js";
import { el, showMessage } from "../dom.js";
import { formatDateTime, formatPercent } from "../format.js";
import { loadImageInto } from "../images.js";
import { describeClass, modelName, positiveProbability } from "../labels.js";
import { errorMessage } from "../messages.js";

const PAGE_SIZE = 20;

export function createHistoryView(section, { onOpen }) {
  const rows = section.querySelector("tbody");
  const table = section.querySelector("table");
  const empty = section.querySelector("[data-role=empty]");
  const error = section.querySelector("[data-role=error]");
  const range = section.querySelector("[data-role=range]");
  const previous = section.querySelector("[data-role=previous]");
  const next = section.querySelector("[data-role=next]");
  const refresh = section.querySelector("[data-role=refresh]");

  let offset = 0;
  let generation = 0; // bumps on every load and reset; stale responses are dropped
  const thumbnails = new IntersectionObserver(loadVisibleThumbnails, { rootMargin: "200px" });
  const resultOfThumbnail = new WeakMap();

  async function load({ highlightId = null } = {}) {
    const run = ++generation;
    section.setAttribute("aria-busy", "true");
    try {
      const page = await api.listResults({ limit: PAGE_SIZE, offset });
      if (run !== generation) return;
      showMessage(error, "");
      render(page, highlightId);
    } catch (failure) {
      if (run === generation) showMessage(error, errorMessage(failure));
    } finally {
      if (run === generation) section.removeAttribute("aria-busy");
    }
  }

  function render(page, highlightId) {
    thumbnails.disconnect();
    rows.replaceChildren(...page.items.map((result) => renderRow(result, result.id === highlightId)));
    table.hidden = page.items.length === 0;
    empty.hidden = page.items.length > 0;
    const last = page.offset + page.items.length;
    range.textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "";
    previous.disabled = page.offset === 0;
    next.disabled = last >= page.total;
  }

  function renderRow(result, isNew) {
    const finding = describeClass(result.label);
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
      { className: isNew ? "is-new" : "" },
      el("td", {}, thumbnail),
      el("td", {}, open),
      el("td", {}, el("span", { className: `tag tag--${finding.tone}`, textContent: finding.finding })),
      el("td", { className: "numeric", textContent: formatPercent(positiveProbability(result)) }),
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
      loadImageInto(entry.target, resultOfThumbnail.get(entry.target)).catch(() => {
        entry.target.classList.add("is-missing");
      });
    }
  }

  previous.addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE_SIZE);
    load();
  });
  next.addEventListener("click", () => {
    offset += PAGE_SIZE;
    load();
  });
  refresh.addEventListener("click", () => load());

  return {
    /** Loads the current page. */
    load,
    /** Goes to the first page and marks the result just classified. */
    showLatest(resultId) {
      offset = 0;
      return load({ highlightId: resultId });
    },
    reset() {
      generation += 1;
      offset = 0;
      thumbnails.disconnect();
      rows.replaceChildren();
      range.textContent = "";
      showMessage(error, "");
    },
  };
}
