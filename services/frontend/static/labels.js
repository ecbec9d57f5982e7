// How the model's output is put into words for clinicians.

/** The class whose probability the decision threshold applies to. */
export const POSITIVE_CLASS = "pneumonia";

/** A positive-class probability this close to the threshold (either side) is marked uncertain. */
export const UNCERTAINTY_MARGIN = 0.1;

const CLASSES = {
  normal: { name: "Normal", finding: "No pneumonia detected" },
  pneumonia: { name: "Pneumonia", finding: "Pneumonia suspected" },
};

/** { name, finding, tone } for a class label; unknown labels are shown as they are. */
export function describeClass(label) {
  const known = CLASSES[label] ?? { name: label, finding: `Model output: ${label}` };
  const tone = label === POSITIVE_CLASS ? "positive" : label in CLASSES ? "negative" : "neutral";
  return { ...known, tone };
}

/** The labels a result can have, for filters: [label, finding]. */
export function knownFindings() {
  return Object.entries(CLASSES).map(([label, { finding }]) => [label, finding]);
}

export function positiveProbability(result) {
  return result.probabilities?.[POSITIVE_CLASS];
}

export function modelName(result) {
  return `${result.model_name} v${result.model_version}`;
}

/** Whether the positive probability lies within UNCERTAINTY_MARGIN of the threshold (0.5 when there is none). */
export function isUncertain(result) {
  const probability = positiveProbability(result);
  const threshold = typeof result.threshold === "number" ? result.threshold : 0.5;
  return typeof probability === "number" && Math.abs(probability - threshold) < UNCERTAINTY_MARGIN;
}

/** Whether the model flagged the image as unlike those it was trained on (`ood`, when the result has it). */
export function isOutOfDistribution(result) {
  return result.ood === true;
}

/**
 * Where the explanation heatmap of a result is, or null: a path under the API (`/results/{id}/heatmap`,
 * fetched with the bearer token) or a data: URL. A PNG overlay of the whole image, same aspect ratio.
 */
export function heatmapUrl(result) {
  return result.explanation?.heatmap_url ?? null;
}

export const UNCERTAIN_NOTE = "Uncertain: the probability is close to the decision threshold. Read with extra care.";
export const OUT_OF_DISTRIBUTION_NOTE =
  "Unusual image: it looks unlike the chest X-rays the model was trained on, so this result may be unreliable. " +
  "Check that the right image was sent.";

export const DISCLAIMER =
  "Decision support only, not a diagnosis. The image must be read and the finding confirmed by a qualified clinician.";
