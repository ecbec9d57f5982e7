// The model pages: the deployed models, and one model's card in plain words: what it is made for, the
// patients it was trained on, its classes, its measured performance (with 95% confidence intervals where
// the card gives them) and its known limits. All of it comes from the model card, through the gateway.
import * as api from "../api.js";
import { el, roles, showMessage } from "../dom.js";
import { formatPercent } from "../format.js";
import { useFacts } from "../intended-use.js";
import { DISCLAIMER } from "../labels.js";
import { errorMessage } from "../messages.js";

const METRIC_NAMES = {
  n: "Images",
  accuracy: "Accuracy",
  roc_auc: "ROC AUC",
  sensitivity: "Sensitivity",
  specificity: "Specificity",
  precision: "Precision (positive predictive value)",
  npv: "Negative predictive value",
  f1: "F1 score",
  macro_f1: "Macro F1 score",
  balanced_accuracy: "Balanced accuracy",
  val_ece: "Validation set",
  test_ece: "Test set",
};
const AS_PERCENT = new Set(["accuracy", "sensitivity", "specificity", "precision", "npv", "balanced_accuracy"]);
const SPLIT_NAMES = {
  test: "Test set (held out)",
  val: "Validation set (chose the threshold: optimistic)",
  calibration: "Calibration: expected calibration error (lower is better)",
};
const HIDDEN_SPLITS = new Set(["onnx_parity"]); // engineering checks, not the model's performance

export function createModelsView(section) {
  const heading = section.querySelector("h1");
  const { error, loading, content } = roles(section, "error", "loading", "content");
  let generation = 0;

  async function load(name) {
    const run = ++generation;
    content.replaceChildren();
    showMessage(error, "");
    loading.hidden = false;
    heading.textContent = name ? `Model ${name}` : "Models";
    section.setAttribute("aria-busy", "true");
    try {
      if (name) {
        const model = await api.getModel(name);
        if (run === generation) renderModel(model);
      } else {
        const models = await api.listModels();
        if (run === generation) content.replaceChildren(...models.map(modelSummary));
      }
    } catch (failure) {
      if (run === generation) showMessage(error, errorMessage(failure));
    } finally {
      if (run === generation) {
        loading.hidden = true;
        section.removeAttribute("aria-busy");
      }
    }
  }

  function renderModel(model) {
    heading.textContent = `${model.name} v${model.version}`;
    content.replaceChildren(
      el(
        "div",
        { className: "card model-page" },
        el("p", {}, el("a", { href: "#/models", textContent: "All models" })),
        el("p", { className: "model-task", textContent: model.task }),
        ...(model.description ? [el("p", { className: "muted", textContent: model.description })] : []),
        ...part("What it is made for", madeFor(model)),
        ...part("What it tells", classList(model)),
        ...part("Measured performance", performance(model)),
        ...part("Known limits", knownLimits(model)),
        el("p", { className: "disclaimer", textContent: DISCLAIMER }),
      ),
    );
  }

  function reset() {
    generation += 1;
    content.replaceChildren();
  }

  return { load, reset };
}

function modelSummary(model) {
  const use = model.intended_use;
  return el(
    "article",
    { className: "card model-summary" },
    el("h2", {}, el("a", { href: modelHref(model.name), textContent: `${model.name} v${model.version}` })),
    el("p", { className: "model-task", textContent: model.task }),
    el(
      "p",
      { className: "muted" },
      use
        ? `Made for ${use.input_kind}; trained on ${use.population.description}.`
        : "Runs before every classifier: it tells what an image shows, so that each image goes to the model made for it.",
    ),
  );
}

function part(title, ...children) {
  return [el("h2", { textContent: title }), ...children.flat()];
}

function madeFor(model) {
  const use = model.intended_use;
  if (!use) {
    return [
      el("p", {
        textContent:
          "This model does not classify findings. It runs before every classifier and tells what an image shows, " +
          "so that each image goes to the model made for it, and images no model is made for are refused.",
      }),
    ];
  }
  const facts = useFacts(use).flatMap(([term, description]) => [
    el("dt", { textContent: term }),
    el("dd", { textContent: description }),
  ]);
  return [
    el("dl", { className: "facts" }, ...facts),
    el("p", {
      className: "muted",
      textContent:
        "Images outside this use are refused before the model runs; a patient outside its population gets a warning with the result.",
    }),
  ];
}

function classList(model) {
  const items = model.classes.map((item) =>
    el("li", {}, el("strong", { textContent: item.name }), ` — shown as “${item.finding}”`),
  );
  return [el("ul", { className: "model-classes" }, ...items)];
}

function performance(model) {
  const splits = Object.entries(model.metrics ?? {}).filter(
    ([split, values]) => !HIDDEN_SPLITS.has(split) && values && typeof values === "object",
  );
  if (!splits.length) return [el("p", { className: "muted", textContent: "The model card gives no metrics." })];
  splits.sort(([a], [b]) => splitOrder(a) - splitOrder(b));
  const anyInterval = splits.some(([split, values]) => Object.keys(values).some((name) => interval(model, split, name)));
  return [
    ...splits.map(([split, values]) => metricTable(model, split, values)),
    ...(anyInterval
      ? []
      : [el("p", { className: "muted", textContent: "The model card gives no confidence intervals for these metrics." })]),
  ];
}

function metricTable(model, split, values) {
  const rows = Object.entries(values).map(([name, value]) => {
    const range = interval(model, split, name);
    return el(
      "tr",
      {},
      el("th", { scope: "row", textContent: METRIC_NAMES[name] ?? name.replaceAll("_", " ") }),
      el("td", { className: "numeric", textContent: formatMetric(name, value) }),
      el("td", {
        className: "numeric",
        textContent: range ? `${formatMetric(name, range[0])} – ${formatMetric(name, range[1])}` : "–",
      }),
    );
  });
  const table = el(
    "table",
    { className: "metrics" },
    el("caption", { textContent: SPLIT_NAMES[split] ?? split.replaceAll("_", " ") }),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        el("th", { scope: "col", textContent: "Metric" }),
        el("th", { scope: "col", className: "numeric", textContent: "Value" }),
        el("th", { scope: "col", className: "numeric", textContent: "95% confidence interval" }),
      ),
    ),
    el("tbody", {}, ...rows),
  );
  return el("div", { className: "table-scroll" }, table);
}

/** A metric's bootstrap 95% confidence interval [low, high] from the card's `metrics_ci`, or null. */
function interval(model, split, name) {
  return model.metrics_ci?.[split]?.[name] ?? null;
}

function formatMetric(name, value) {
  if (typeof value !== "number") return "–";
  if (name === "n" || name.startsWith("n_")) return String(Math.round(value));
  if (AS_PERCENT.has(name)) return formatPercent(value);
  return value.toFixed(3);
}

function knownLimits(model) {
  const limits = model.intended_use?.known_limits ?? [];
  if (!limits.length) return [el("p", { className: "muted", textContent: "The model card states no known limits." })];
  return [el("ul", { className: "model-limits" }, ...limits.map((limit) => el("li", { textContent: limit })))];
}

function splitOrder(split) {
  return { test: 0, val: 1 }[split] ?? 2;
}

export function modelHref(name) {
  return `#/models/${encodeURIComponent(name)}`;
}
