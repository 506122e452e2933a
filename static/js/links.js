// Web addresses in a message become links, built with DOM methods: every other
// character stays text, so a message can still add no markup.

// http(s):// then anything up to whitespace; trailing punctuation that usually ends a
// sentence (or closes a bracket the address did not open) is left outside the link.
const ADDRESS = /\bhttps?:\/\/[^\s<>"]+/gi;
const TRAILING = /[.,;:!?'"’”)\]}>]+$/;

function trimmed(address) {
  let end = address.replace(TRAILING, "");
  // Keep a closing parenthesis the address itself opened (Wikipedia-style links).
  while (end.length < address.length && address[end.length] === ")" && count(end, "(") > count(end, ")")) {
    end = address.slice(0, end.length + 1);
  }
  return end;
}

function count(text, char) {
  return text.split(char).length - 1;
}

function parses(address) {
  try {
    new URL(address);
    return true;
  } catch {
    return false; // e.g. "http://[": stays text
  }
}

function link(address) {
  const anchor = document.createElement("a");
  anchor.href = address;
  anchor.textContent = address;
  anchor.target = "_blank";
  anchor.rel = "noopener noreferrer";
  return anchor;
}

// The text as a fragment of text nodes and <a> elements.
export function withLinks(text) {
  const fragment = document.createDocumentFragment();
  let from = 0;
  for (const match of text.matchAll(ADDRESS)) {
    const address = trimmed(match[0]);
    if (!parses(address)) continue;
    fragment.append(document.createTextNode(text.slice(from, match.index)), link(address));
    from = match.index + address.length;
  }
  fragment.append(document.createTextNode(text.slice(from)));
  return fragment;
}
