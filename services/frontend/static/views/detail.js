// The detail dialog of one result: the full-size image next to the result.
import { showMessage } from "../dom.js";
import { formatBytes, formatDateTime } from "../format.js";
import { loadImageInto } from "../images.js";
import { errorMessage } from "../messages.js";
import { renderResult } from "./result.js";

export function createDetailView(dialog) {
  const heading = dialog.querySelector("h2");
  const image = dialog.querySelector("[data-role=image]");
  const imageStatus = dialog.querySelector("[data-role=image-status]");
  const imageFacts = dialog.querySelector("[data-role=image-facts]");
  const fullSizeLink = dialog.querySelector("[data-role=full-size]");
  const body = dialog.querySelector("[data-role=result]");
  let shownId = null;

  async function open(result) {
    shownId = result.id;
    heading.textContent = `Result of ${formatDateTime(result.created_at)}`;
    body.replaceChildren(renderResult(result));
    image.removeAttribute("src");
    image.alt = `Chest X-ray submitted by ${result.created_by}`;
    imageFacts.textContent = `${result.image.content_type} · ${formatBytes(result.image.size_bytes)}`;
    fullSizeLink.hidden = true;
    showMessage(imageStatus, "Loading the image…");
    dialog.showModal();
    try {
      await loadImageInto(image, result);
      if (shownId !== result.id) return;
      showMessage(imageStatus, "");
      fullSizeLink.href = image.src;
      fullSizeLink.hidden = false;
    } catch (failure) {
      if (shownId === result.id) showMessage(imageStatus, errorMessage(failure));
    }
  }

  function close() {
    shownId = null;
    if (dialog.open) dialog.close();
  }

  dialog.querySelector("[data-role=close]").addEventListener("click", close);
  dialog.addEventListener("close", () => (shownId = null));
  // A click on the backdrop (outside the dialog's box) closes it, as Escape does.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) close();
  });

  return { open, close };
}
