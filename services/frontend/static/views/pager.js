// Previous / next page controls with "21–40 of 57", for any page of { items, total, limit, offset }.
import { el } from "../dom.js";

export function createPager(nav, { onOffset }) {
  const previous = el("button", { type: "button", className: "button", textContent: "Previous page" });
  const range = el("span", { className: "pager-range" });
  range.setAttribute("aria-live", "polite");
  const next = el("button", { type: "button", className: "button", textContent: "Next page" });
  nav.replaceChildren(previous, range, next);
  let shown = { total: 0, limit: 1, offset: 0, items: [] };

  previous.addEventListener("click", () => onOffset(Math.max(0, shown.offset - shown.limit)));
  next.addEventListener("click", () => onOffset(shown.offset + shown.limit));

  return {
    show(page) {
      shown = page;
      const last = page.offset + page.items.length;
      range.textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "";
      previous.disabled = page.offset === 0;
      next.disabled = last >= page.total;
      nav.hidden = page.total <= page.limit && page.offset === 0;
    },
    clear() {
      nav.hidden = true;
      range.textContent = "";
    },
  };
}
