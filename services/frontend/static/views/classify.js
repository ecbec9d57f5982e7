// Choosing an X-ray (picker or drag and drop), its preview, and classifying it.
import * as api from "../api.js";
import { showMessage } from "../dom.js";
import { formatBytes } from "../format.js";
import { errorMessage, isRetryable, UNSUPPORTED_FILE } from "../messages.js";
import { renderResult } from "./result.js";

const ACCEPTED_TYPES = ["image/jpeg", "image/png"];
const ACCEPTED_NAME = /\.(jpe?g|png)$/i;

export function createClassifyView(section, { onClassified }) {
  const input = section.querySelector("#file-input");
  const dropZone = section.querySelector("[data-role=drop-zone]");
  const preview = section.querySelector("[data-role=preview]");
  const previewImage = preview.querySelector("img");
  const previewCaption = preview.querySelector("figcaption");
  const previewNote = section.querySelector("[data-role=preview-note]");
  const classifyButton = section.querySelector("[data-role=classify]");
  const clearButton = section.querySelector("[data-role=clear]");
  const status = section.querySelector("[data-role=status]");
  const error = section.querySelector("[data-role=error]");
  const resultPanel = section.querySelector("[data-role=result]");
  const placeholder = resultPanel.firstElementChild;

  let file = null;
  let previewUrl = null;
  let generation = 0; // bumps on reset, so a late response cannot show after sign-out

  function choose(candidate) {
    reset();
    if (!ACCEPTED_TYPES.includes(candidate.type) && !ACCEPTED_NAME.test(candidate.name)) {
      showMessage(error, UNSUPPORTED_FILE);
      return;
    }
    file = candidate;
    previewUrl = URL.createObjectURL(file);
    previewImage.src = previewUrl;
    previewImage.alt = `Preview of ${file.name}`;
    previewCaption.textContent = `${file.name} · ${formatBytes(file.size)}`;
    preview.hidden = false;
    classifyButton.disabled = false;
    clearButton.hidden = false;
  }

  async function classify() {
    const run = generation;
    classifyButton.disabled = true;
    resultPanel.setAttribute("aria-busy", "true");
    showMessage(error, "");
    showMessage(status, "Classifying the image…");
    try {
      const result = await api.classify(file);
      if (run !== generation) return;
      resultPanel.replaceChildren(renderResult(result));
      showMessage(status, "");
      onClassified(result);
    } catch (failure) {
      if (run !== generation) return;
      showMessage(status, "");
      showMessage(error, errorMessage(failure));
      classifyButton.disabled = !isRetryable(failure);
    } finally {
      resultPanel.removeAttribute("aria-busy");
    }
  }

  function reset() {
    generation += 1;
    file = null;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    previewImage.removeAttribute("src");
    previewImage.hidden = false;
    preview.hidden = true;
    showMessage(previewNote, "");
    classifyButton.disabled = true;
    clearButton.hidden = true;
    showMessage(status, "");
    showMessage(error, "");
    resultPanel.replaceChildren(placeholder);
  }

  input.addEventListener("change", () => {
    if (input.files.length) choose(input.files[0]);
    input.value = ""; // so that choosing the same file again is noticed
  });
  previewImage.addEventListener("error", () => {
    if (!file) return;
    previewImage.hidden = true;
    showMessage(previewNote, "The preview cannot be shown; the file may not be a valid image.");
  });
  classifyButton.addEventListener("click", classify);
  clearButton.addEventListener("click", () => {
    reset();
    input.focus();
  });

  dropZone.addEventListener("dragover", (event) => {
    event.preventDefault();
    dropZone.classList.add("is-dragging");
  });
  dropZone.addEventListener("dragleave", () => dropZone.classList.remove("is-dragging"));
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropZone.classList.remove("is-dragging");
    if (event.dataTransfer.files.length) choose(event.dataTransfer.files[0]);
  });

  return { reset };
}
