// Numbers, dates and sizes in the user's locale.

const percent = new Intl.NumberFormat(undefined, {
  style: "percent",
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
});
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A probability in percent; a model's output is never shown as a certain 0.0% or 100.0%. */
export function formatPercent(probability) {
  if (typeof probability !== "number") return "–";
  if (probability > 0.999) return `> ${percent.format(0.999)}`;
  if (probability < 0.001) return `< ${percent.format(0.001)}`;
  return percent.format(probability);
}

export function formatDateTime(isoString) {
  const date = new Date(isoString);
  return Number.isNaN(date.getTime()) ? String(isoString) : dateTime.format(date);
}

export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}
