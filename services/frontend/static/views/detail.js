// The detail dialog of one result: the full-size image (DICOM rendered by the gateway) next to the result.
import { formatBytes, formatDateTime } from "../format.js";
import { resultImageUrl } from "../images.js";
import { heatmapUrl } from "../labels.js";
import { createImageViewer } from "./image-viewer.js";
import { renderResult } from "./result.js";

const IMAGE_TYPES = { "image/jpeg": "JPEG", "image/png": "PNG", "application/dicom": "DICOM" };

export function createDetailView(dialog) {
  const heading = dialog.querySelector("h2");
  const imageSlot = dialog.querySelector("[data-role=image]");
  const body = dialog.querySelector("[data-role=result]");

  function open(result) {
    heading.textContent = `Result of ${formatDateTime(result.created_at)}`;
    const viewer = createImageViewer({
      alt: `Chest X-ray submitted by ${result.created_by}`,
      imageUrl: resultImageUrl(result.id),
      heatmap: heatmapUrl(result),
      caption: imageCaption(result.image),
    });
    imageSlot.replaceChildren(viewer.element);
    body.replaceChildren(renderResult(result, referenceFacts(result)));
    dialog.showModal();
  }

  function close() {
    if (dialog.open) dialog.close();
  }

  dialog.querySelector("[data-role=close]").addEventListener("click", close);
  // A click on the backdrop (outside the dialog's box) closes it, as Escape does.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) close();
  });

  return { open, close };
}

function imageCaption(image) {
  const dicomFacts = [image.modality, image.body_part, image.view_position && `${image.view_position} view`];
  return [IMAGE_TYPES[image.content_type] ?? image.content_type, ...dicomFacts, formatBytes(image.size_bytes)]
    .filter(Boolean)
    .join(" · ");
}

function referenceFacts(result) {
  return [
    ["Accession number", result.accession_number],
    ["External reference", result.external_id],
  ].filter(([, value]) => value);
}
