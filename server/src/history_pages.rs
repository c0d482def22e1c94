//! Pages of a room's history (`shared/PROTOCOL.md`, "Messages, order and recovery"): the
//! `history` event pages back from a seq (scrollback) or on from a position (catch-up), and a
//! `join` with `since` recovers with the first page of what the client missed, telling it
//! whether more follow. Every page is read by position from the store ([`History::select`]) and
//! holds at most `HISTORY_ACK_BYTES` of JSON, but never less than one message, so paging always
//! moves on.

use serde_json::{Value, json};

use crate::{
    config::Config,
    history::{History, HistoryError, Position, Selected},
    protocol::{ChatError, HistoryRequest, Message, Since, check_room, ok_ack, parse},
};

/// What a `join` ack carries of the room's messages.
#[derive(Debug, PartialEq)]
pub struct Recovery {
    pub history: Vec<Message>,
    /// Whether `history` starts right after the client's `since`; absent without one.
    pub recovered: Option<bool>,
    /// With `recovered`: the room keeps more after `history`, for `history { after }` to fetch.
    pub more: bool,
    /// The room's epoch now (none before its first message). A client recovered from `since`
    /// in an earlier epoch continues in this one: a failover carried its messages over.
    pub epoch: Option<String>,
}

/// A page from `position`: at most `limit` messages and `max_bytes` of JSON (one at least).
pub async fn page(
    history: &History,
    nsp: &str,
    room: &str,
    position: Position<'_>,
    limit: usize,
    max_bytes: usize,
) -> Result<Selected, HistoryError> {
    let mut page = history
        .select(nsp, room, position, limit, max_bytes)
        .await?;
    // The store counted its own, shorter, form of each message: the page ends where the
    // messages as clients get them reach the budget.
    let fitting = within(
        &page.messages,
        max_bytes,
        matches!(position, Position::Before(_)),
    );
    if fitting < page.messages.len() {
        page.more = true;
        page.messages = match position {
            Position::Before(_) => page.messages.split_off(page.messages.len() - fitting),
            Position::After(_) => {
                page.messages.truncate(fitting);
                page.messages
            }
        };
    }
    Ok(page)
}

/// How many of `messages` fit in `max_bytes` of JSON, one at least, counted from the newest
/// (`from_newest`) or the oldest.
fn within(messages: &[Message], max_bytes: usize, from_newest: bool) -> usize {
    let mut total = 0;
    let fits = |m: &&Message| {
        total += serde_json::to_vec(m).map_or(usize::MAX, |json| json.len() + 1);
        total <= max_bytes
    };
    let count = if from_newest {
        messages.iter().rev().take_while(fits).count()
    } else {
        messages.iter().take_while(fits).count()
    };
    count.max(1).min(messages.len())
}

/// What a client joining the room gets: with `since`, the first page of what it missed if the
/// room still keeps all of it; else (or without `since`) the newest messages.
pub async fn recover(
    history: &History,
    nsp: &str,
    room: &str,
    since: Option<&Since>,
    max_bytes: usize,
) -> Result<Recovery, HistoryError> {
    if let Some(since) = since {
        let missed = page(
            history,
            nsp,
            room,
            Position::After(since),
            usize::MAX,
            max_bytes,
        )
        .await?;
        let continues = match missed.messages.first() {
            Some(first) => first.seq == since.seq + 1,
            None => since.seq == missed.seq,
        };
        if missed.known && continues {
            return Ok(Recovery {
                history: missed.messages,
                recovered: Some(true),
                more: missed.more,
                epoch: missed.epoch,
            });
        }
    }
    let newest = page(
        history,
        nsp,
        room,
        Position::Before(0),
        usize::MAX,
        max_bytes,
    )
    .await?;
    Ok(Recovery {
        history: newest.messages,
        recovered: since.map(|_| false),
        more: false,
        epoch: newest.epoch,
    })
}

/// Answers `history`: a page of a room the socket is in (`in_room`), `{ messages, more, epoch }`.
/// An `after` the room does not know (another epoch) gets no messages and the room's epoch, so
/// that the client starts over.
pub async fn answer(
    history: &History,
    config: &Config,
    nsp: &str,
    in_room: impl Fn(&str) -> bool,
    payload: Value,
) -> Result<Value, ChatError> {
    let req: HistoryRequest = parse(payload)?;
    check_room(&req.room)?;
    if !in_room(&req.room) {
        return Err(ChatError::not_in_room(&req.room));
    }
    let position = match (&req.before, &req.after) {
        (Some(_), Some(_)) => {
            return Err(ChatError::bad_request(
                "history takes `before` or `after`, not both",
            ));
        }
        (_, Some(after)) => Position::After(after),
        (before, None) => Position::Before(before.unwrap_or(0)),
    };
    if req.limit == Some(0) {
        return Err(ChatError::bad_request("limit must be at least 1"));
    }
    let limit = req
        .limit
        .unwrap_or(config.history_page_len)
        .min(config.history_page_max_len);
    let page = page(
        history,
        nsp,
        &req.room,
        position,
        limit,
        config.history_ack_bytes,
    )
    .await
    .map_err(ChatError::internal)?;
    Ok(ok_ack(json!({
        "messages": page.messages,
        "more": page.more,
        "epoch": page.epoch,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::{memory, post, since, texts};

    #[tokio::test]
    async fn a_client_recovers_exactly_what_it_missed_while_it_is_kept() {
        let (history, cluster, _) = memory(3);
        let mut posted = Vec::new();
        for text in ["1", "2", "3", "4", "5"] {
            posted.push(post(&history, &cluster, text, None).await.message);
        }
        let recover = |s: Since| {
            let history = &history;
            async move {
                recover(history, "/", "r", Some(&s), usize::MAX)
                    .await
                    .unwrap()
            }
        };
        let caught_up = recover(since(&posted[4])).await;
        assert_eq!(caught_up.recovered, Some(true));
        assert!(caught_up.history.is_empty());
        let missed_two = recover(since(&posted[2])).await;
        assert_eq!(missed_two.recovered, Some(true));
        assert_eq!(texts(&missed_two.history), ["4", "5"]);
        assert!(!missed_two.more);
        let too_old = recover(since(&posted[0])).await;
        assert_eq!(too_old.recovered, Some(false));
        assert_eq!(texts(&too_old.history), ["3", "4", "5"]);
        let other_epoch = recover(Since {
            epoch: "lost".into(),
            seq: 4,
        })
        .await;
        assert_eq!(other_epoch.recovered, Some(false));
        let ahead = recover(Since {
            epoch: posted[0].epoch.clone(),
            seq: 9,
        })
        .await;
        assert_eq!(ahead.recovered, Some(false));
    }

    #[tokio::test]
    async fn a_gap_beyond_one_ack_recovers_its_oldest_part_and_pages_on_to_the_rest() {
        let (history, cluster, _) = memory(10);
        let mut posted = Vec::new();
        for text in ["one", "two", "three", "four"] {
            posted.push(post(&history, &cluster, text, None).await.message);
        }
        let one = serde_json::to_vec(&posted[3]).unwrap().len() + 1;
        let newest = recover(&history, "/", "r", None, one * 2 + 1)
            .await
            .unwrap();
        assert_eq!(texts(&newest.history), ["three", "four"]);
        assert_eq!(newest.recovered, None);
        let first = recover(&history, "/", "r", Some(&since(&posted[0])), one * 2 + 1)
            .await
            .unwrap();
        assert_eq!(first.recovered, Some(true), "everything it missed is kept");
        assert_eq!(
            (texts(&first.history), first.more),
            (vec!["two", "three"], true)
        );
        let rest = page(
            &history,
            "/",
            "r",
            Position::After(&since(&first.history[1])),
            usize::MAX,
            one * 2 + 1,
        )
        .await
        .unwrap();
        assert_eq!((texts(&rest.messages), rest.more), (vec!["four"], false));
        // A budget smaller than one message still moves on, a message at a time.
        let tiny = recover(&history, "/", "r", Some(&since(&posted[0])), 1)
            .await
            .unwrap();
        assert_eq!((texts(&tiny.history), tiny.more), (vec!["two"], true));
    }

    #[tokio::test]
    async fn without_history_seqs_still_count_and_only_a_caught_up_client_recovers() {
        let (history, cluster, _) = memory(0);
        let a = post(&history, &cluster, "x", None).await.message;
        let b = post(&history, &cluster, "y", None).await.message;
        assert_eq!((a.seq, b.seq), (1, 2));
        let caught_up = recover(&history, "/", "r", Some(&since(&b)), usize::MAX)
            .await
            .unwrap();
        assert_eq!(caught_up.recovered, Some(true));
        let behind = recover(&history, "/", "r", Some(&since(&a)), usize::MAX)
            .await
            .unwrap();
        assert_eq!(behind.recovered, Some(false));
    }
}
