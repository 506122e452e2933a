// How times read on the page: a short time on each line, the full date and time on
// hover (`title`), and a label for each day ("Today", "Yesterday", "Wednesday, 3 December").

const shortTime = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
export const fullDateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });
const dayThisYear = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long" });
const dayOtherYear = new Intl.DateTimeFormat(undefined, {
  weekday: "long",
  day: "numeric",
  month: "long",
  year: "numeric",
});

// The local calendar day of a moment, as a key that compares equal within one day.
export function dayKey(date) {
  return `${date.getFullYear()}-${date.getMonth() + 1}-${date.getDate()}`;
}

export function dayLabel(date, now = new Date()) {
  if (dayKey(date) === dayKey(now)) return "Today";
  const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
  if (dayKey(date) === dayKey(yesterday)) return "Yesterday";
  return (date.getFullYear() === now.getFullYear() ? dayThisYear : dayOtherYear).format(date);
}

export function timeElement(iso) {
  const date = new Date(iso);
  const time = document.createElement("time");
  time.className = "meta";
  time.dateTime = iso;
  time.textContent = shortTime.format(date);
  time.title = fullDateTime.format(date);
  return time;
}
