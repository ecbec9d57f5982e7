// How the model's output is put into words for clinicians. Every class name and finding comes
// from the result itself (`classes`, from the model's card): no class is named here.

/** Two most probable classes this close to each other, or a positive-class probability this close
 * to the threshold (either side), mark a result uncertain. */
export const UNCERTAINTY_MARGIN = 0.1;

/** { name, finding, tone } for one of the result's labels (its decided label by default). */
export function describeClass(result, label = result.label) {
  const known = result.classes?.find((item) => item.label === label);
  const words = known ? { name: known.name, finding: known.finding } : { name: label, finding: `Model output: ${label}` };
  const tone = !result.positive_class ? "neutral" : label === result.positive_class ? "positive" : "negative";
  return { ...words, tone };
}

/** The probability the history lists: the positive class's for binary models, else the decided class's. */
export function headlineProbability(result) {
  return result.probabilities?.[result.positive_class ?? result.label];
}

/** What `headlineProbability` is the probability of, in words. */
export function headlineClassName(result) {
  return describeClass(result, result.positive_class ?? result.label).name;
}

export function modelName(result) {
  return `${result.model_name} v${result.model_version}`;
}

/** Whether the decision was close: the positive probability near the threshold, or (no threshold)
 * the two most probable classes near each other. */
export function isUncertain(result) {
  if (result.positive_class && typeof result.threshold === "number") {
    const probability = result.probabilities?.[result.positive_class];
    return typeof probability === "number" && Math.abs(probability - result.threshold) < UNCERTAINTY_MARGIN;
  }
  const [first, second] = Object.values(result.probabilities ?? {}).sort((a, b) => b - a);
  return typeof second === "number" && first - second < 2 * UNCERTAINTY_MARGIN;
}

/** Whether the model flagged the image as unlike those it was trained on. */
export function isOutOfDistribution(result) {
  return result.ood?.flagged === true;
}

/** The API path of the result's explanation heatmap (a PNG overlay of the whole image), or null. */
export function heatmapUrl(result) {
  return result.explanation?.heatmap_url ?? null;
}

export const UNCERTAIN_NOTE = "Uncertain: the probability is close to the decision threshold. Read with extra care.";
export const OUT_OF_DISTRIBUTION_NOTE =
  "Unusual image: it looks unlike the images the model was trained on, so this result may be unreliable. " +
  "Check that the right image was sent.";

export const DISCLAIMER =
  "Decision support only, not a diagnosis. The image must be read and the finding confirmed by a qualified clinician.";
