// Small DOM helpers. Text is always set through textContent, never parsed as HTML,
// because most of what the app shows comes from the server.

/** An element with properties (className, textContent, type, ...) and child nodes or strings. */
export function el(tag, properties = {}, ...children) {
  const element = Object.assign(document.createElement(tag), properties);
  element.append(...children);
  return element;
}

/** The elements of `container` marked data-role="<name>", by name in camelCase ("drop-zone" -> dropZone). */
export function roles(container, ...names) {
  const camel = (name) => name.replace(/-(\w)/g, (_, letter) => letter.toUpperCase());
  return Object.fromEntries(names.map((name) => [camel(name), container.querySelector(`[data-role=${name}]`)]));
}

/** Shows `text` in `element`, or hides the element when there is no text. */
export function showMessage(element, text) {
  element.textContent = text ?? "";
  element.hidden = !text;
}

/** Empties a form's fields without firing its reset event. */
export function clearFields(form) {
  for (const field of form.querySelectorAll("input, select")) field.value = "";
}
