// How the model's classes are put into words for clinicians.

/** The class whose probability the decision threshold applies to. */
export const POSITIVE_CLASS = "pneumonia";

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

export function positiveProbability(result) {
  return result.probabilities?.[POSITIVE_CLASS];
}

export function modelName(result) {
  return `${result.model_name} v${result.model_version}`;
}

export const DISCLAIMER =
  "Decision support only, not a diagnosis. The image must be read and the finding confirmed by a qualified clinician.";
