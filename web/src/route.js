// The room lives in the URL (`#/room/lobby`), so a link or a refresh lands in the same room.

/** The server's limit on room names (`MAX_ROOM_LEN` in server/src/protocol.rs). */
export const MAX_ROOM_LEN = 128;

const PREFIX = "#/room/";

/**
 * The room a URL hash names, or null when it names none (or one the server would refuse).
 * @param {string} hash `location.hash`
 * @returns {string | null}
 */
export function roomFromHash(hash) {
  if (!hash.startsWith(PREFIX)) return null;
  let room;
  try {
    room = decodeURIComponent(hash.slice(PREFIX.length));
  } catch {
    return null;
  }
  return validRoom(room) ? room : null;
}

/**
 * The hash of a room's page.
 * @param {string} room
 */
export function hashForRoom(room) {
  return PREFIX + encodeURIComponent(room);
}

/**
 * Whether the server accepts this room name: 1 to 128 characters, not blank, no control
 * characters.
 * @param {string} room
 */
export function validRoom(room) {
  return (
    room.trim() !== "" &&
    [...room].length <= MAX_ROOM_LEN &&
    !/\p{Cc}/u.test(room)
  );
}
