// The page: what it shows and what the user does on it. Text from the server is only ever set
// as text, never parsed as HTML.

import { describeError } from "./errors.js";

/**
 * @typedef {{ id: string, name: string }} Member
 * @typedef {import("./timeline.js").Message} Message
 */

/** Within this many pixels of the bottom, new lines keep the log scrolled to the end. */
const STICK_PX = 48;

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

  $("error-dismiss").addEventListener("click", () => (error.hidden = true));

  /** @param {HTMLElement} item */
  function append(item) {
    const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < STICK_PX;
    log.append(item);
    if (atEnd) log.scrollTop = log.scrollHeight;
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
     * Shows an empty room; `send` gets the composer's text and resolves to whether it was sent.
     * @param {string} room
     * @param {(text: string) => Promise<boolean>} send
     */
    showRoom(room, send) {
      only($("chat"));
      $("room-title").textContent = `# ${room}`;
      doc.title = `${room} · Chat`;
      log.replaceChildren();
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

    /** @param {Message[]} messages */
    addMessages(messages) {
      for (const message of messages) {
        const item = doc.createElement("li");
        item.className = message.from.id === myId ? "message mine" : "message";
        item.dataset.testid = "message";
        item.dataset.id = message.id;
        const from = doc.createElement("span");
        from.className = "from";
        from.textContent = message.from.name;
        const time = doc.createElement("time");
        time.dateTime = new Date(message.ts).toISOString();
        time.textContent = clock(message.ts);
        const text = doc.createElement("p");
        text.className = "text";
        text.textContent = message.text;
        item.append(from, time, text);
        append(item);
      }
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
