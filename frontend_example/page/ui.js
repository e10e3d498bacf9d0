// What every part of the page draws with: elements, buttons, SVG symbols, the status and alert
// lines, and modal dialogs that give the focus back to what opened them. Plain DOM.
import { describeError } from "../lib/errors.js";
import { ICON_PATHS } from "../lib/icons.js";

const SVG = "http://www.w3.org/2000/svg";

/** Return the element with this id. */
export const $ = (id) => document.getElementById(id);

/** Dates and times as the list and the dialogs show them (the reader's own locale). */
export const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** Show a status line; screen readers announce it politely (role=status). */
export function say(text) {
  $("status").textContent = text;
}

/** Show an error until the next action; role=alert makes screen readers read it at once. */
export function sayError(error) {
  $("alert").textContent = typeof error === "string" ? error : describeError(error);
}

/** Clear the error line. */
export function clearError() {
  $("alert").textContent = "";
}

/** Return a <button type=button> with text, and an aria-label when the text alone would be ambiguous. */
export function button(text, { label = null, className = "", onClick = null } = {}) {
  const node = document.createElement("button");
  node.type = "button";
  node.textContent = text;
  if (label) node.setAttribute("aria-label", label);
  if (className) node.className = className;
  if (onClick) node.addEventListener("click", onClick);
  return node;
}

/** Return a new element with a class and text. */
export function element(tag, { className = "", text = "" } = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

/** Give node a tooltip with the full text: long names are cut short with "…" on one line. */
export function titled(node, text) {
  node.title = text;
  return node;
}

/**
 * Return an inline SVG symbol of kind (ICON_PATHS). With a label it is an image read out as
 * those words ("PDF document"); without, it is decoration beside text that says the same.
 */
export function svgIcon(kind, label = null) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", `icon icon-${kind}`);
  svg.setAttribute("focusable", "false");
  if (label) {
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
    const title = document.createElementNS(SVG, "title");
    title.textContent = label;
    svg.append(title);
  } else {
    svg.setAttribute("aria-hidden", "true");
  }
  for (const d of ICON_PATHS[kind] || ICON_PATHS.file) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

/**
 * Open dialog as a modal (Esc closes it, the rest of the page is inert) and, once it closes,
 * put the focus back on opener, or on its like when a redraw of the list replaced it.
 */
export function openDialog(dialog, opener) {
  const label = opener?.getAttribute?.("aria-label");
  dialog.addEventListener(
    "close",
    () => {
      const target = opener?.isConnected
        ? opener
        : label && document.querySelector(`button[aria-label="${CSS.escape(label)}"]`);
      target?.focus();
    },
    { once: true },
  );
  dialog.showModal();
}
