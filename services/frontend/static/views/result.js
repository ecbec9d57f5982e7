// One classification result: the finding in words, warnings, a bar per class, threshold and model.
import { el } from "../dom.js";
import { formatDateTime, formatPercent } from "../format.js";
import { warningNote, warningTag } from "../intended-use.js";
import {
  describeClass,
  DISCLAIMER,
  isOutOfDistribution,
  isUncertain,
  modelName,
  OUT_OF_DISTRIBUTION_NOTE,
  UNCERTAIN_NOTE,
} from "../labels.js";
import { modelHref } from "./models.js";

/** `extraFacts`: more [term, description] pairs, e.g. the image's DICOM attributes in the detail view. */
export function renderResult(result, extraFacts = []) {
  const finding = describeClass(result);
  return el(
    "div",
    { className: "result" },
    el("p", { className: `finding finding--${finding.tone}`, textContent: finding.finding }),
    ...renderWarnings(result),
    renderProbabilities(result),
    ...(result.followups ?? []).map(renderFollowup),
    el(
      "dl",
      { className: "facts" },
      ...fact("Decision threshold", thresholdText(result)),
      el("dt", { textContent: "Model" }),
      el("dd", {}, `${modelName(result)} · `, modelLink(result.model_name, "About this model")),
      ...(result.image_kind ? fact("Image kind", imageKindText(result.image_kind)) : []),
      ...(result.age_band ? fact("Age band", `${result.age_band} years`) : []),
      ...(result.ood ? fact("Image check", imageCheckText(result.ood)) : []),
      ...fact("Classified", formatDateTime(result.created_at)),
      ...fact("Submitted by", result.created_by),
      ...extraFacts.flatMap(([term, description]) => fact(term, description)),
    ),
    el("p", { className: "disclaimer", textContent: DISCLAIMER }),
  );
}

/** The answer of a model that ran after the first on its finding (e.g. the severity of COVID-19 pneumonia). */
function renderFollowup(followup) {
  const finding = describeClass(followup);
  const section = el(
    "section",
    { className: "followup" },
    el("h3", { className: "followup-title", textContent: followup.task || modelName(followup) }),
    el("p", { className: `finding finding--${finding.tone}`, textContent: finding.finding }),
    ...renderWarnings(followup),
    renderProbabilities(followup),
    el(
      "p",
      { className: "followup-model" },
      `${modelName(followup)} · `,
      modelLink(followup.model_name, "About this model"),
    ),
  );
  section.setAttribute("data-role", "followup");
  return section;
}

/** The short marks a table row shows next to the finding. */
export function warningTags(result) {
  const tags = [];
  if (isUncertain(result)) tags.push(el("span", { className: "tag tag--warning", textContent: "Uncertain" }));
  if (isOutOfDistribution(result)) tags.push(el("span", { className: "tag tag--warning", textContent: "Unusual image" }));
  for (const warning of result.warnings ?? []) {
    tags.push(el("span", { className: "tag tag--warning", textContent: warningTag(warning) }));
  }
  return tags;
}

function renderWarnings(result) {
  const notes = (result.warnings ?? []).map(warningNote);
  if (isUncertain(result)) notes.push(UNCERTAIN_NOTE);
  if (isOutOfDistribution(result)) notes.push(OUT_OF_DISTRIBUTION_NOTE);
  return notes.map((note) => el("p", { className: "warning", textContent: note }));
}

/** A link to the model page (intended use, population, metrics, known limits) of a model. */
function modelLink(name, text) {
  return el("a", { href: modelHref(name), textContent: text });
}

function imageKindText(kind) {
  return `${kind.name} (${formatPercent(kind.probability)}, checked by ${kind.model})`;
}

function renderProbabilities(result) {
  const rows = Object.entries(result.probabilities ?? {}).map(([label, probability]) => {
    const { name, tone } = describeClass(result, label);
    const track = el("span", { className: "bar-track" }, el("span", { className: `bar-fill bar-fill--${tone}` }));
    // Widths are set through the CSSOM, which the page's style-src 'self' policy allows.
    track.firstChild.style.width = `${clampPercent(probability)}%`;
    if (label === result.positive_class && typeof result.threshold === "number") {
      const marker = el("span", {
        className: "bar-threshold",
        title: `Decision threshold ${formatPercent(result.threshold)}`,
      });
      marker.style.left = `${clampPercent(result.threshold)}%`;
      track.append(marker);
    }
    track.setAttribute("aria-hidden", "true");
    return el(
      "li",
      { className: "bar" },
      el("span", { className: "bar-name", textContent: name }),
      el("span", { className: "bar-value", textContent: formatPercent(probability) }),
      track,
    );
  });
  const list = el("ul", { className: "bars" }, ...rows);
  list.setAttribute("aria-label", "Probability of each class");
  return list;
}

function thresholdText(result) {
  if (!result.positive_class || typeof result.threshold !== "number") return "None (the most probable class is reported)";
  const positive = describeClass(result, result.positive_class).name.toLowerCase();
  return `${formatPercent(result.threshold)} probability of ${positive}`;
}

function imageCheckText(ood) {
  const score = ` (score ${ood.score.toFixed(1)})`;
  return ood.flagged ? `Unusual image${score}` : `Like the images the model was trained on${score}`;
}

function fact(term, description) {
  return [el("dt", { textContent: term }), el("dd", { textContent: description })];
}

function clampPercent(probability) {
  return Math.min(100, Math.max(0, Number(probability) * 100 || 0));
}
