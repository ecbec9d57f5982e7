// What a model is made for, and why an image was refused or warned about, in plain words.
// Everything comes from the gateway: the refusal's `found` / `accepted` / `input_kind`, the warning's
// fields, the model card's intended use. DICOM codes are explained, never invented.

const MODALITIES = {
  CR: "a computed radiography (CR) X-ray",
  DX: "a digital X-ray (DX)",
  DR: "a digital X-ray (DR)",
  CT: "a CT image",
  MR: "an MR image",
  US: "an ultrasound image",
  NM: "a nuclear medicine image",
  PT: "a PET image",
  MG: "a mammogram",
  XA: "an angiography image",
  RF: "a fluoroscopy image",
  OT: "an image of another kind (OT)",
  SC: "a secondary capture",
  SEG: "a segmentation",
};
const VIEWS = { PA: "PA (posterior–anterior)", AP: "AP (anterior–posterior)", LL: "left lateral", RL: "right lateral", LAT: "lateral" };
const COLOURS = new Set(["RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR"]);

/** The plain-words message of an intended-use refusal (a problem with `refusals`), or null for any other problem. */
export function refusalMessage(problem) {
  if (!problem?.refusals?.length) return null;
  const [first] = problem.refusals;
  const checked = first.code !== "unsupported_image_kind" && problem.input_kind; // a model the image was checked against
  const madeFor = checked ? ` This model is made for: ${problem.input_kind}.` : "";
  const text = sentence(first, problem);
  return `${text[0].toUpperCase()}${text.slice(1)}${madeFor}`;
}

function sentence(refusal, problem) {
  const { found, accepted = [] } = refusal;
  switch (refusal.code) {
    case "unsupported_modality":
      return `this image is ${modalityWords(found)}; this model reads ${orList(accepted)} images.`;
    case "unsupported_body_part":
      return `this image is of the ${lower(found)}; this model reads images of the ${orList(accepted.map(lower))}.`;
    case "unsupported_view":
      return `this image was taken in the ${VIEWS[found] ?? found} view; this model reads ${orList(accepted.map((v) => VIEWS[v] ?? v))} views.`;
    case "unsupported_image_type":
      return `this image is marked ${found.replaceAll("\\", ", ")}, a kind of image (such as a planning or scout image) this model does not read.`;
    case "unsupported_photometric_interpretation":
      return COLOURS.has(found)
        ? `this image is in colour (${found}); this model reads greyscale images only.`
        : `this image's pixels are stored as ${found}; this model reads ${orList(accepted)} images.`;
    case "image_too_small":
      return `this image is only ${found.replace("x", " × ")} pixels; this model needs at least ${accepted[0]?.replace(">= ", "") ?? "more"} pixels on the shorter side.`;
    case "population_mismatch":
      return `the patient is in the age band ${found} years; this model was made for ${accepted[0] ?? "other patients"}.`;
    case "unsupported_image_kind":
      return kindSentence(refusal, problem);
    default:
      return `${refusal.detail}.`;
  }
}

/** The app never names a model, so the image went to the model made for its kind: there is none. */
function kindSentence(refusal, problem) {
  const what = problem.image_kind?.name ?? refusal.found;
  return `the image check recognised this image as “${what}”, and no model here is made for that kind of image.`;
}

/** The note a result shows for one of its warnings (e.g. a population mismatch). */
export function warningNote(warning) {
  if (warning.code === "population_mismatch") {
    return (
      `Other population: the patient is in the age band ${warning.found} years, but this model was trained on ` +
      `${warning.accepted?.[0] ?? "other patients"}. The result may not be reliable for this patient.`
    );
  }
  return `${warning.detail}.`;
}

/** The short tag a table row shows for a result's warnings. */
export function warningTag(warning) {
  return warning.code === "population_mismatch" ? "Other population" : "Warning";
}

/** [term, description] pairs of what a model is made for, for the model page. */
export function useFacts(use) {
  const ages = ageRange(use.population);
  return [
    ["Made for", use.input_kind],
    ["Image kind", use.image_kind],
    ["Modalities (DICOM)", use.modalities.join(", ")],
    ["Body parts (DICOM)", use.body_parts.length ? use.body_parts.join(", ") : "Any"],
    ["Views (DICOM)", use.view_positions.length ? use.view_positions.map((v) => VIEWS[v] ?? v).join(", ") : "Any"],
    ["Pixel formats (DICOM)", use.photometric_interpretations.join(", ")],
    ["Not for", use.excluded_image_types.length ? `${use.excluded_image_types.join(", ")} images` : "–"],
    ["Minimum resolution", use.min_source_pixels ? `${use.min_source_pixels} pixels on the shorter side` : "Any"],
    ["Population", use.population.description],
    ...(ages ? [["Ages", ages]] : []),
  ];
}

function ageRange({ min_age_years: low, max_age_years: high }) {
  if (low == null && high == null) return null;
  if (low == null) return `up to ${high} years`;
  if (high == null) return `${low} years and over`;
  return `${low} to ${high} years`;
}

function modalityWords(code) {
  return MODALITIES[code] ? `${MODALITIES[code]} (${code})` : `of modality ${code}`;
}

function orList(items) {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} or ${items.at(-1)}`;
}

function lower(text) {
  return String(text ?? "").toLowerCase();
}
