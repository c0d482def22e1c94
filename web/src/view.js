// The page: what it shows and what the user does on it. Text from the server is only ever set
// as text, never parsed as HTML.

import { describeError } from "./errors.js";

/**
 * @typedef {{ id: string, name: string }} Member
 * @typedef {import("./timeline.js").Message} Message
 * @typedef {import("./outbox.js").Pending} Pending
 */

/** Within this many pixels of the bottom, new lines keep the log scrolled to the end. */
const STICK_PX = 48;

/** Within this many pixels of the top, the log asks for earlier messages. */
const EARLIER_PX = 40;

/** What the top of the log says in each scrollback state (scrollback.js). */
const EARLIER_TEXT = {
  more: "Load earlier messages",
  loading: "Loading earlier messages…",
  beginning: "Beginning of the room",
};

/** @param {Document} doc */
export function createView(doc) {
  /** @param {string} id */
  const $ = (id) => /** @type {HTMLElement} */ (doc.querySelector(`[data-testid="${id}"]`));
  const nameForm = /** @type {HTMLFormElement} */ ($("name-form"));
  const nameInput = /** @type {HTMLInputElement} */ ($("name-input"));
  const roomForm = /** @type {HTMLFormElement} */ ($("room-form"));
  const roomInput = /** @type {HTMLInputElement} */ ($("room-input"));
  const composer = /** @type {HTMLFormElement} */ ($("composer"));
  const messageInput = /** @type {HTMLInputElement} */ ($("message-input"));
  const sendButton = /** @type {HTMLButtonElement} */ ($("message-send"));
  const log = $("messages");
  const online = $("online");
  const error = $("error");
  let myId = "";
  // The first line of the log, always: what scrollback offers (scrollback.js).
  const earlier = doc.createElement("li");
  earlier.className = "earlier";
  earlier.dataset.testid = "earlier";
  const earlierButton = doc.createElement("button");
  earlierButton.type = "button";
  earlier.append(earlierButton);
  log.prepend(earlier);

  $("error-dismiss").addEventListener("click", () => (error.hidden = true));

  /**
   * Adds a line to the log; stored messages go before the pending ones, which stay at the end
   * until the server confirms them.
   * @param {HTMLElement} item
   * @param {boolean} [beforePending]
   */
  function append(item, beforePending = false) {
    const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < STICK_PX;
    const firstPending = beforePending ? log.querySelector(":scope > .pending") : null;
    log.insertBefore(item, firstPending);
    if (atEnd) log.scrollTop = log.scrollHeight;
  }

  /** A stored message's line. @param {Message} message */
  function storedItem(message) {
    const item = messageItem(message);
    item.dataset.id = message.id;
    item.dataset.seq = String(message.seq);
    item.dataset.epoch = message.epoch;
    return item;
  }

  /** @param {string} clientId */
  function pendingItem(clientId) {
    for (const item of log.querySelectorAll(":scope > .pending")) {
      if (/** @type {HTMLElement} */ (item).dataset.clientId === clientId) return item;
    }
    return null;
  }

  /**
   * A message line: who, when (or that it is still being sent), what.
   * @param {{ from: Member, text: string, ts?: number }} message
   */
  function messageItem(message) {
    const item = doc.createElement("li");
    item.className = message.from.id === myId ? "message mine" : "message";
    item.dataset.testid = "message";
    const from = doc.createElement("span");
    from.className = "from";
    from.textContent = message.from.name;
    const time = doc.createElement("time");
    if (message.ts === undefined) {
      time.textContent = "sending…";
    } else {
      time.dateTime = new Date(message.ts).toISOString();
      time.textContent = clock(message.ts);
    }
    const text = doc.createElement("p");
    text.className = "text";
    text.textContent = message.text;
    item.append(from, time, text);
    return item;
  }

  /** @param {HTMLElement} shown */
  function only(shown) {
    for (const section of [nameForm, roomForm, $("chat")]) section.hidden = section !== shown;
  }

  return {
    /**
     * @param {(name: string) => string | null} submit returns why the name is refused, or null
     */
    askName(submit) {
      only(nameForm);
      nameInput.focus();
      nameForm.onsubmit = (event) => {
        event.preventDefault();
        const problem = submit(nameInput.value.trim());
        $("name-problem").hidden = problem === null;
        $("name-problem").textContent = problem ?? "";
      };
    },

    /** @param {(room: string) => void} submit */
    askRoom(submit) {
      only(roomForm);
      $("room-title").textContent = "";
      roomInput.focus();
      roomForm.onsubmit = (event) => {
        event.preventDefault();
        submit(roomInput.value.trim());
      };
    },

    /**
     * Shows an empty room; `send` gets the composer's text and says whether it took it (it is then
     * shown as pending, and the composer is cleared for the next one).
     * @param {string} room
     * @param {(text: string) => boolean | Promise<boolean>} send
     */
    showRoom(room, send) {
      only($("chat"));
      $("room-title").textContent = `# ${room}`;
      doc.title = `${room} · Chat`;
      log.replaceChildren(earlier);
      online.replaceChildren();
      $("online-count").textContent = "0";
      error.hidden = true;
      composer.onsubmit = async (event) => {
        event.preventDefault();
        const text = messageInput.value;
        if (text.trim() === "") return;
        if (await send(text)) {
          messageInput.value = "";
          error.hidden = true;
        }
        messageInput.focus();
      };
    },

    /** @param {import("./connection.js").State} state @param {string} [detail] */
    setState(state, detail) {
      const badge = $("connection");
      badge.hidden = false;
      badge.dataset.state = state;
      badge.textContent = state;
      badge.title = detail ?? "";
    },

    /** @param {Member} me */
    setMe(me) {
      myId = me.id;
      const badge = $("me");
      badge.hidden = false;
      badge.textContent = me.name;
      badge.dataset.id = me.id;
    },

    /** The composer works only while the room is joined and the connection is up. */
    setCanSend(can) {
      messageInput.disabled = !can;
      sendButton.disabled = !can;
    },

    /**
     * Stored messages, in order after those shown; one of this page's own replaces its pending line.
     * @param {Message[]} messages
     */
    addMessages(messages) {
      for (const message of messages) {
        const item = storedItem(message);
        if (message.clientId !== undefined && message.from.id === myId) {
          item.dataset.clientId = message.clientId;
          pendingItem(message.clientId)?.remove();
        }
        append(item, true);
      }
    },

    /** @returns {{ seq: number, epoch: string } | null} the oldest stored message shown */
    oldestShown() {
      const first = /** @type {HTMLElement | null} */ (log.querySelector(":scope > [data-seq]"));
      if (first === null) return null;
      return { seq: Number(first.dataset.seq), epoch: first.dataset.epoch ?? "" };
    },

    /**
     * Earlier stored messages, oldest first, above those shown; what the reader was looking at
     * stays where it was.
     * @param {Message[]} messages
     */
    prependMessages(messages) {
      const height = log.scrollHeight;
      const items = messages.map(storedItem);
      const after = /** @type {HTMLElement} */ (earlier.nextSibling ?? null);
      for (const item of items) log.insertBefore(item, after);
      log.scrollTop += log.scrollHeight - height;
    },

    /** @param {import("./scrollback.js").Earlier} state */
    setEarlier(state) {
      earlier.dataset.state = state;
      earlierButton.textContent = EARLIER_TEXT[state];
      earlierButton.disabled = state !== "more";
    },

    /** Scrolling to the top of the log, or the button there, asks for earlier messages. @param {() => void} load */
    onWantEarlier(load) {
      earlierButton.addEventListener("click", load);
      log.addEventListener("scroll", () => {
        if (log.scrollTop < EARLIER_PX) load();
      });
    },

    /**
     * A message of this page the server has not confirmed yet: dimmed, at the end of the log.
     * @param {Pending} pending
     * @param {string} name
     */
    addPending(pending, name) {
      const item = messageItem({ from: { id: myId, name }, text: pending.text });
      item.classList.add("pending");
      item.dataset.clientId = pending.clientId;
      item.title = "Not confirmed by the server yet";
      append(item);
    },

    /** A pending message the server refused. @param {string} clientId */
    dropPending(clientId) {
      pendingItem(clientId)?.remove();
    },

    /**
     * The room's stored messages start over (what the page held could not be recovered): the log
     * keeps only the pending messages, after a line saying so when messages were lost.
     * @param {boolean} lost
     */
    resetMessages(lost) {
      const pending = [...log.querySelectorAll(":scope > .pending")];
      log.replaceChildren(earlier);
      if (lost) {
        const item = doc.createElement("li");
        item.className = "notice lost";
        item.dataset.testid = "lost";
        item.textContent = "Some messages could not be recovered; the latest are shown below.";
        log.append(item);
      }
      log.append(...pending);
    },

    /**
     * Puts a refused message back in the composer, unless the user is typing another.
     * @param {string} text
     */
    restoreDraft(text) {
      if (messageInput.value === "") messageInput.value = text;
    },

    /** @param {{ kind: "join" | "leave", user: Member, ts: number }} notice */
    addNotice(notice) {
      const item = doc.createElement("li");
      item.className = "notice";
      item.dataset.testid = "notice";
      item.dataset.kind = notice.kind;
      item.dataset.user = notice.user.id;
      const verb = notice.kind === "join" ? "joined" : "left";
      item.textContent = `${notice.user.name} ${verb} · ${clock(notice.ts)}`;
      append(item);
    },

    /** @param {Member[]} members */
    showOnline(members) {
      $("online-count").textContent = String(members.length);
      online.replaceChildren(
        ...[...members]
          .sort((a, b) => a.name.localeCompare(b.name))
          .map((member) => {
            const item = doc.createElement("li");
            item.dataset.testid = "online-user";
            item.dataset.id = member.id;
            item.textContent = member.id === myId ? `${member.name} (you)` : member.name;
            return item;
          }),
      );
    },

    /** @param {import("./errors.js").ChatError} problem */
    showError(problem) {
      error.dataset.code = problem.code;
      $("error-text").textContent = describeError(problem);
      error.hidden = false;
    },
  };
}

/** @param {number} ts */
function clock(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
