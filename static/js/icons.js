// Small inline icons, drawn with DOM methods (no emoji: not every system has a font
// for them; no markup strings: CSP and text-only rendering stay simple).

const SVG = "http://www.w3.org/2000/svg";

// A padlock: the mark of a private room. `label` is what a screen reader says.
export function lockIcon(label = "private") {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("class", "icon lock");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const shackle = document.createElementNS(SVG, "path");
  shackle.setAttribute("d", "M5 7V5a3 3 0 0 1 6 0v2");
  shackle.setAttribute("fill", "none");
  shackle.setAttribute("stroke", "currentColor");
  shackle.setAttribute("stroke-width", "1.6");
  const body = document.createElementNS(SVG, "rect");
  body.setAttribute("x", "3");
  body.setAttribute("y", "7");
  body.setAttribute("width", "10");
  body.setAttribute("height", "7.5");
  body.setAttribute("rx", "1.5");
  body.setAttribute("fill", "currentColor");
  svg.append(shackle, body);
  return svg;
}
