// Scrollback: the room's older messages, a page at a time (`history { before }`), loaded when the
// reader scrolls to the top of the log or asks for them, until the room's first kept message. The
// timeline (timeline.js) owns the newest end of the log; this only ever adds before its oldest
// line, and only messages of that line's epoch older than it, so nothing shows twice.

/**
 * @typedef {import("./timeline.js").Message} Message
 * @typedef {"more" | "loading" | "beginning"} Earlier what the top of the log offers
 * @typedef {{
 *   oldestShown(): { seq: number, epoch: string } | null,
 *   prependMessages(messages: Message[]): void,
 *   setEarlier(state: Earlier): void,
 *   onWantEarlier(load: () => void): void,
 * }} ScrollbackView
 * @typedef {{ ok: true, messages: Message[], more: boolean } | { ok: false }} Page
 */

/** Messages a scrollback page asks for. */
const PAGE_LEN = 50;

/**
 * @param {ScrollbackView} view
 * @param {(room: string, before: number, limit: number) => Promise<Page>} older
 */
export function createScrollback(view, older) {
  /** @type {string | null} */
  let room = null;
  let loading = false;
  let done = false;

  async function load() {
    if (room === null || loading || done) return;
    const oldest = view.oldestShown();
    if (oldest === null || oldest.seq <= 1) {
      // An empty room, or its first message on screen: nothing is older.
      done = oldest !== null;
      view.setEarlier("beginning");
      return;
    }
    const target = room;
    loading = true;
    view.setEarlier("loading");
    const page = await older(target, oldest.seq, PAGE_LEN);
    loading = false;
    if (target !== room) return;
    if (!page.ok) {
      view.setEarlier("more");
      return;
    }
    const earlier = page.messages.filter((m) => m.epoch === oldest.epoch && m.seq < oldest.seq);
    view.prependMessages(earlier);
    done = !page.more || earlier.length === 0;
    view.setEarlier(done ? "beginning" : "more");
  }

  view.onWantEarlier(() => void load());

  return {
    /**
     * The log shows another room, or its messages started over: scrollback starts from what is
     * shown now.
     * @param {string | null} next
     */
    reset(next) {
      room = next;
      loading = false;
      done = false;
      view.setEarlier("more");
    },
    /** The log changed: says at once when it shows the room's first message, or none yet. */
    settle() {
      if (loading || done) return;
      const oldest = view.oldestShown();
      done = oldest !== null && oldest.seq <= 1;
      view.setEarlier(oldest === null || done ? "beginning" : "more");
    },
  };
}
