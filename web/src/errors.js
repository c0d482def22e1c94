// Failed acks (`{ ok: false, error: { code, message } }`, see shared/PROTOCOL.md) in words a
// chatter understands; the server's message adds the specifics (how long, what limit). `timeout`
// is this client's own code for a request the server did not answer.

/** @typedef {{ code: string, message: string }} ChatError */

const HEADLINES = new Map([
  ["too_long", "Message too long"],
  ["rate_limited", "Slow down: too many messages"],
  ["bad_request", "Not accepted"],
  ["not_in_room", "Not in this room yet"],
  ["unauthorized", "Not allowed"],
  ["internal", "The server had a problem"],
  ["timeout", "No answer from the server"],
]);

/**
 * @param {ChatError} error
 * @returns {string}
 */
export function describeError(error) {
  const headline = HEADLINES.get(error.code) ?? "Something went wrong";
  return error.message ? `${headline}: ${error.message}` : headline;
}
