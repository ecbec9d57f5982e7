// An X-ray with, when the result has one, its explanation heatmap laid over it and an opacity control.
import { el, showMessage } from "../dom.js";
import { apiImageUrl } from "../images.js";
import { errorMessage } from "../messages.js";

let viewers = 0; // for unique ids of the controls
const HEATMAP_LEGEND = "The warmer the colour (up to red), the more a region weighed in the model's answer.";

/**
 * `imageUrl`: a Promise of the image's URL; `heatmap`: the heatmap's data: URL or API path, or null.
 * Returns { element, setHeatmap } — the heatmap can be added once a result arrives.
 */
export function createImageViewer({ alt, imageUrl, heatmap = null, caption = "" }) {
  const id = `viewer-${(viewers += 1)}`;
  const image = el("img", { className: "viewer-image", alt });
  const overlay = el("img", { className: "viewer-heatmap", alt: "" });
  overlay.hidden = true;
  const status = el("p", { className: "status", textContent: "Loading the image…" });
  status.setAttribute("role", "status");
  const controls = el("div", { className: "viewer-controls" });
  controls.hidden = true;
  const element = el(
    "figure",
    { className: "viewer" },
    el("div", { className: "viewer-stage" }, image, overlay),
    status,
    controls,
    el("figcaption", { textContent: caption }),
  );

  imageUrl.then(
    (url) => {
      image.src = url;
      showMessage(status, "");
    },
    (failure) => showMessage(status, errorMessage(failure) || "The image cannot be shown."),
  );
  image.addEventListener("error", () => {
    image.hidden = true;
    showMessage(status, "The image cannot be shown; the file may not be a valid image.");
  });

  function setHeatmap(source) {
    if (!source) return;
    apiImageUrl(source).then((url) => {
      overlay.src = url;
      overlay.hidden = false;
      controls.replaceChildren(...heatmapControls(id, overlay));
      controls.hidden = false;
    }, () => showMessage(status, "The explanation heatmap cannot be shown."));
  }

  setHeatmap(heatmap);
  return { element, setHeatmap };
}

function heatmapControls(id, overlay) {
  const show = el("input", { type: "checkbox", id: `${id}-show`, checked: true });
  const opacity = el("input", { type: "range", id: `${id}-opacity`, min: 0, max: 100, step: 5, value: 50 });
  const update = () => {
    overlay.hidden = !show.checked;
    opacity.disabled = !show.checked;
    overlay.style.opacity = String(opacity.value / 100);
    opacity.setAttribute("aria-valuetext", `${opacity.value}%`);
  };
  show.addEventListener("change", update);
  opacity.addEventListener("input", update);
  update();
  return [
    el("span", { className: "check" }, show, el("label", { htmlFor: show.id, textContent: "Show explanation heatmap" })),
    el("label", { htmlFor: opacity.id, textContent: "Heatmap opacity" }),
    opacity,
    el("p", { className: "hint", textContent: HEATMAP_LEGEND }),
  ];
}
