// Who this tab is. The display name is kept per browser (localStorage); the chatter id the server
// hands out is kept per tab (sessionStorage), so a refresh is the same person while a new tab is
// a new one.

/** The server's limit on display names (`MAX_NAME_LEN` in server/src/protocol.rs). */
export const MAX_NAME_LEN = 64;

const NAME_KEY = "chat.name";
const CHATTER_KEY = "chat.chatterId";

/**
 * Why the server would refuse this display name, or null if it is fine.
 * @param {string} name
 * @returns {string | null}
 */
export function nameProblem(name) {
  if (name.trim() === "") return "Pick a name.";
  if ([...name].length > MAX_NAME_LEN) return `At most ${MAX_NAME_LEN} characters.`;
  if (/\p{Cc}/u.test(name)) return "No control characters.";
  return null;
}

export function loadName() {
  return read("localStorage", NAME_KEY);
}

/** @param {string} name */
export function saveName(name) {
  write("localStorage", NAME_KEY, name);
}

export function loadChatterId() {
  return read("sessionStorage", CHATTER_KEY);
}

/** @param {string} id */
export function saveChatterId(id) {
  write("sessionStorage", CHATTER_KEY, id);
}

// Storage can be disabled, and then even naming it throws; the chat still works, it only forgets
// the name and the chatter id.

/** @param {"localStorage" | "sessionStorage"} storage @param {string} key */
function read(storage, key) {
  try {
    return globalThis[storage].getItem(key);
  } catch {
    return null;
  }
}

/** @param {"localStorage" | "sessionStorage"} storage @param {string} key @param {string} value */
function write(storage, key, value) {
  try {
    globalThis[storage].setItem(key, value);
  } catch {
    // Not remembered, as said above.
  }
}
