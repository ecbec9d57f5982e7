// One chosen file on the classify page: its preview, its state while it is sent, then its result.
import * as api from "../api.js";
import { el, showMessage } from "../dom.js";
import { formatBytes } from "../format.js";
import { heatmapUrl } from "../labels.js";
import { errorMessage, isRetryable, UNSUPPORTED_FILE } from "../messages.js";
import { createImageViewer } from "./image-viewer.js";
import { renderResult } from "./result.js";

const BROWSER_IMAGE = { types: ["image/jpeg", "image/png"], name: /\.(jpe?g|png)$/i };
const DICOM = { types: ["application/dicom"], name: /\.dcm$/i };

/** States: ready, rejected, classifying, done, failed (retryable or not). */
export function createCase(file, { onRemove }) {
  const kind = fileKind(file);
  let previewUrl = null;
  let state = kind ? "ready" : "rejected";
  let retryable = false;

  const status = el("p", { className: "case-status", textContent: kind ? "Ready to classify" : "" });
  status.setAttribute("role", "status");
  const error = el("p", { className: "alert" });
  error.setAttribute("role", "alert");
  showMessage(error, kind ? "" : UNSUPPORTED_FILE);
  const resultPanel = el("div", { className: "case-result" }, status, error);
  resultPanel.dataset.role = "result";
  resultPanel.setAttribute("aria-live", "polite");

  const viewer = kind ? createImageViewer({ alt: `Preview of ${file.name}`, imageUrl: loadPreview() }) : null;
  const remove = el("button", { type: "button", className: "button button--small", textContent: "Remove" });
  remove.setAttribute("aria-label", `Remove ${file.name}`);
  remove.addEventListener("click", () => onRemove(handle));

  const element = el(
    "li",
    { className: "case card" },
    el(
      "div",
      { className: "case-head" },
      el("h2", { className: "case-title", textContent: file.name }),
      el("span", { className: "muted", textContent: formatBytes(file.size) }),
      remove,
    ),
    el("div", { className: kind ? "case-grid" : "" }, ...(viewer ? [viewer.element] : []), resultPanel),
  );

  function loadPreview() {
    if (kind === "image") {
      previewUrl = URL.createObjectURL(file);
      return Promise.resolve(previewUrl);
    }
    return api.previewUpload(file).then((blob) => (previewUrl = URL.createObjectURL(blob)));
  }

  async function classify() {
    state = "classifying";
    remove.disabled = true;
    showMessage(error, "");
    status.replaceChildren(progressIndicator(), " Classifying…");
    resultPanel.setAttribute("aria-busy", "true");
    try {
      const result = await api.classify(file);
      state = "done";
      status.remove();
      resultPanel.append(renderResult(result));
      viewer.setHeatmap(heatmapUrl(result));
      return result;
    } catch (failure) {
      state = "failed";
      retryable = isRetryable(failure);
      status.textContent = retryable ? "Not classified; it can be sent again" : "Not classified";
      showMessage(error, errorMessage(failure));
      throw failure;
    } finally {
      remove.disabled = false;
      resultPanel.removeAttribute("aria-busy");
    }
  }

  function dispose() {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    element.remove();
  }

  const handle = {
    element,
    classify,
    dispose,
    /** Whether Classify should (re)send this file. */
    get pending() {
      return state === "ready" || (state === "failed" && retryable);
    },
    get state() {
      return state;
    },
  };
  return handle;
}

function fileKind(file) {
  if (BROWSER_IMAGE.types.includes(file.type) || BROWSER_IMAGE.name.test(file.name)) return "image";
  if (DICOM.types.includes(file.type) || DICOM.name.test(file.name)) return "dicom";
  if (!file.type && !file.name.includes(".")) return "dicom"; // DICOM files often have no extension
  return null;
}

function progressIndicator() {
  const progress = el("progress");
  progress.setAttribute("aria-label", "Classifying");
  return progress;
}
