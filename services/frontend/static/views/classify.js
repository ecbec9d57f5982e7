// The classify page: choose one or several files (picker or drag and drop), preview them, send them one by one.
import { roles } from "../dom.js";
import { createCase } from "./case.js";

export function createClassifyView(section) {
  const input = section.querySelector("#file-input");
  const parts = roles(section, "drop-zone", "classify", "clear", "summary", "progress", "cases");
  const { dropZone, classify: classifyButton, clear: clearButton, summary, progress, cases: list } = parts;
  const progressBar = progress.querySelector("progress");
  const progressLabel = progress.querySelector("[role=status]");

  let cases = [];
  let running = false;
  let generation = 0; // bumps on reset, so a run cannot go on after sign-out

  function choose(files) {
    const added = [...files].map((file) => createCase(file, { onRemove: remove }));
    cases.push(...added);
    list.append(...added.map((item) => item.element));
    progressLabel.textContent = "";
    progress.hidden = true;
    update();
  }

  function remove(item) {
    item.dispose();
    cases = cases.filter((other) => other !== item);
    update();
    if (!cases.length) input.focus();
  }

  async function classifyPending() {
    const run = generation;
    const batch = cases.filter((item) => item.pending);
    running = true;
    update();
    progress.hidden = false;
    let failed = 0;
    for (const [index, item] of batch.entries()) {
      if (!cases.includes(item)) continue; // removed while waiting its turn
      progressBar.max = batch.length;
      progressBar.value = index;
      progressLabel.textContent = `Classifying ${index + 1} of ${batch.length}…`;
      try {
        await item.classify();
        if (run !== generation) return;
      } catch {
        if (run !== generation) return;
        failed += 1;
      }
    }
    progressBar.value = batch.length;
    progressLabel.textContent = failed
      ? `${batch.length - failed} of ${batch.length} classified; ${failed} could not be classified.`
      : `${batch.length} of ${batch.length} classified.`;
    running = false;
    update();
  }

  function update() {
    const pending = cases.filter((item) => item.pending).length;
    classifyButton.disabled = running || pending === 0;
    clearButton.hidden = cases.length === 0;
    clearButton.disabled = running;
    summary.textContent = pending ? `${pending} ${pending === 1 ? "image" : "images"} ready` : "";
  }

  function reset() {
    generation += 1;
    running = false;
    for (const item of cases) item.dispose();
    cases = [];
    progress.hidden = true;
    update();
  }

  input.addEventListener("change", () => {
    if (input.files.length) choose(input.files);
    input.value = ""; // so that choosing the same file again is noticed
  });
  classifyButton.addEventListener("click", classifyPending);
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
    if (event.dataTransfer.files.length) choose(event.dataTransfer.files);
  });

  return { reset };
}
