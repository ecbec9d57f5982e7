// Numbers, dates and sizes in the user's locale, and the date inputs' days as moments.

const percent = new Intl.NumberFormat(undefined, {
  style: "percent",
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
});
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const dateTimeSeconds = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** A probability in percent; a model's output is never shown as a certain 0.0% or 100.0%. */
export function formatPercent(probability) {
  if (typeof probability !== "number") return "–";
  if (probability > 0.999) return `> ${percent.format(0.999)}`;
  if (probability < 0.001) return `< ${percent.format(0.001)}`;
  return percent.format(probability);
}

export function formatDateTime(isoString, { seconds = false } = {}) {
  const date = new Date(isoString);
  if (Number.isNaN(date.getTime())) return String(isoString);
  return (seconds ? dateTimeSeconds : dateTime).format(date);
}

export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/**
 * The moments a "from" and "to" day of date inputs (YYYY-MM-DD, the user's time zone) span, as ISO
 * strings for the API's inclusive `since` and exclusive `until`; undefined for an empty input.
 */
export function dayRange(fromDay, toDay) {
  return {
    since: fromDay ? localMidnight(fromDay, 0).toISOString() : undefined,
    until: toDay ? localMidnight(toDay, 1).toISOString() : undefined,
  };
}

function localMidnight(day, daysLater) {
  const [year, month, date] = day.split("-").map(Number);
  return new Date(year, month - 1, date + daysLater);
}
