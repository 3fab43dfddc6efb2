//! Merges the data frames of a body that are already at hand into one frame.
//!
//! Body-phase filters are called once per frame. A streaming upstream (server-sent events
//! from an LLM provider) writes one chunk per event, and hyper yields one frame per chunk
//! even when a single socket read brought dozens of them: that was one Wasm call, one
//! parse and one client write per event.
//!
//! An HTTP/1 upstream body is a one-slot channel: hyper's connection task decodes the
//! next chunk from its read buffer only after the previous one was taken, so the next
//! frame is never ready at the moment this one is. When it is not, the body waits out
//! one scheduler round (`tokio::task::yield_now`'s deferred wake: it comes once no task
//! is ready and the I/O driver was polled). Within the round the connection task and
//! this body hand over every chunk already buffered, one by one, and this body merges
//! them; at its end the frame goes out. One round and no more: nothing waits for data
//! that has not arrived, and a steady stream is not held back to fill a bigger frame.

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use crate::upstream::BoxError;

/// Merging stops once a frame holds this much; a frame this big passes as it is. Small,
/// because a filter's output for a frame goes out only when the whole frame is done: a
/// stream's first token waits for the events merged with it (about 8 LLM stream events
/// here, some 10 µs of Wasm each), while most of the per-call cost is already saved.
pub const COALESCE_UP_TO: usize = 1024;

pub struct CoalescedBody<B> {
    inner: B,
    /// Data taken but not handed out yet: the frame being merged across yields.
    gathered: Option<Gathered>,
    /// The scheduler round this body is waiting out, while `gathered` is held.
    round: Option<Arc<RoundEnd>>,
    /// What the read-ahead found after the data it merged (trailers, the end, an error),
    /// handed out by the next poll.
    held: Option<Option<Result<Frame<Bytes>, BoxError>>>,
}

/// One frame's data while it is being merged. Copied only when a second frame comes: a
/// lone frame passes through as is.
enum Gathered {
    One(Bytes),
    Merged(BytesMut),
}

impl Gathered {
    fn len(&self) -> usize {
        match self {
            Gathered::One(data) => data.len(),
            Gathered::Merged(data) => data.len(),
        }
    }

    fn push(self, data: &[u8]) -> Gathered {
        let mut merged = match self {
            Gathered::One(first) => {
                let mut merged = BytesMut::with_capacity(first.len() + data.len());
                merged.extend_from_slice(&first);
                merged
            }
            Gathered::Merged(merged) => merged,
        };
        merged.extend_from_slice(data);
        Gathered::Merged(merged)
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Gathered::One(data) => data,
            Gathered::Merged(data) => data.freeze(),
        }
    }
}

/// The end of a scheduler round: the task's waker, wrapped to note that it fired. A
/// poll before that is the same round (hyper polls a body again right away when its
/// write side is ready), not a look after it.
struct RoundEnd {
    ended: AtomicBool,
    task: Waker,
}

impl Wake for RoundEnd {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ended.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl RoundEnd {
    /// Asks the scheduler to wake the task once everything ready now has run.
    fn begin(cx: &Context<'_>) -> Arc<RoundEnd> {
        let round = Arc::new(RoundEnd {
            ended: AtomicBool::new(false),
            task: cx.waker().clone(),
        });
        let waker = Waker::from(round.clone());
        // `yield_now` hands its waker to the scheduler on the first poll; the future
        // itself is done with after that. Outside a runtime it wakes at once.
        let _ = pin!(tokio::task::yield_now()).poll(&mut Context::from_waker(&waker));
        round
    }

    fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }
}

impl<B> CoalescedBody<B> {
    pub fn new(inner: B) -> Self {
        CoalescedBody {
            inner,
            gathered: None,
            round: None,
            held: None,
        }
    }
}

impl<B> Body for CoalescedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(held) = this.held.take() {
            return Poll::Ready(held);
        }
        let mut gathered = match this.gathered.take() {
            Some(gathered) => gathered,
            None => match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => Gathered::One(data),
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => return Poll::Ready(None),
            },
        };
        while gathered.len() < COALESCE_UP_TO {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => gathered = gathered.push(&data),
                    Err(frame) => {
                        this.held = Some(Some(Ok(frame)));
                        break;
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    this.held = Some(Some(Err(e.into())));
                    break;
                }
                Poll::Ready(None) => {
                    this.held = Some(None);
                    break;
                }
                // The inner waker is registered either way: data wakes the task as usual.
                Poll::Pending => match &this.round {
                    // The round is over: hand out what it brought. Likewise when another
                    // task polls now: the round's end would wake the one that began it.
                    Some(round) if round.ended() || !round.task.will_wake(cx.waker()) => break,
                    // Still the same round: wait for its end.
                    Some(_) => {
                        this.gathered = Some(gathered);
                        return Poll::Pending;
                    }
                    None => {
                        this.round = Some(RoundEnd::begin(cx));
                        this.gathered = Some(gathered);
                        return Poll::Pending;
                    }
                },
            }
        }
        this.round = None;
        Poll::Ready(Some(Ok(Frame::data(gathered.into_bytes()))))
    }

    fn is_end_stream(&self) -> bool {
        if self.gathered.is_some() {
            return false;
        }
        match &self.held {
            Some(None) => true,
            Some(Some(_)) => false,
            None => self.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        // Held frames carry no data: what is left is what the inner body has left, plus
        // what was gathered and not handed out yet.
        let inner = self.inner.size_hint();
        let Some(gathered) = &self.gathered else {
            return inner;
        };
        let extra = gathered.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(extra));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(extra));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::time::Duration;

    use http::HeaderMap;
    use http_body_util::BodyExt;

    use super::*;

    /// What a scripted reader does when polled.
    enum Step {
        Data(String),
        Trailers,
        /// Nothing yet, and the next step is ready within this scheduler round, as when
        /// hyper's connection task decodes the next chunk already in its buffer.
        Soon,
        /// Nothing in this scheduler round; the next step is ready in the next one, as
        /// in a stream whose events keep coming.
        NextRound,
        /// Nothing until a timer fires: data that has not arrived.
        Later,
    }

    struct Script {
        steps: VecDeque<Step>,
        /// Set when the `Later` being waited out has come.
        waiting: Option<Arc<AtomicBool>>,
    }

    impl Body for Script {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if let Some(come) = &self.waiting {
                if !come.load(Ordering::Acquire) {
                    return Poll::Pending;
                }
                self.waiting = None;
            }
            match self.steps.pop_front() {
                Some(Step::Data(text)) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(text))))),
                Some(Step::Trailers) => Poll::Ready(Some(Ok(Frame::trailers(HeaderMap::new())))),
                Some(Step::Soon) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Some(step @ (Step::NextRound | Step::Later)) => {
                    let come = Arc::new(AtomicBool::new(false));
                    let (flag, waker) = (come.clone(), cx.waker().clone());
                    tokio::spawn(async move {
                        if matches!(step, Step::Later) {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        } else {
                            tokio::task::yield_now().await;
                        }
                        flag.store(true, Ordering::Release);
                        waker.wake();
                    });
                    self.waiting = Some(come);
                    Poll::Pending
                }
                None => Poll::Ready(None),
            }
        }

        fn is_end_stream(&self) -> bool {
            self.steps.is_empty() && self.waiting.is_none()
        }
    }

    fn data(text: &str) -> Step {
        Step::Data(text.to_owned())
    }

    fn body(steps: Vec<Step>) -> CoalescedBody<Script> {
        CoalescedBody::new(Script {
            steps: steps.into(),
            waiting: None,
        })
    }

    /// The frames the coalesced body yields, as text ("T" for trailers). Read in a spawned
    /// task, as hyper's server connections are: a test's own future is polled apart
    /// from the run queue, so its wake-ups would not stay within a scheduler round.
    async fn frames(steps: Vec<Step>) -> Vec<String> {
        tokio::spawn(read_all(body(steps))).await.unwrap()
    }

    async fn read_all(mut body: CoalescedBody<Script>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            out.push(match frame.into_data() {
                Ok(data) => String::from_utf8(data.to_vec()).unwrap(),
                Err(_) => "T".to_owned(),
            });
        }
        assert!(body.is_end_stream());
        out
    }

    // Paused clocks: a `Later` comes only once the runtime is idle, so the order of
    // events is fixed and no test depends on how fast it runs.

    #[tokio::test(start_paused = true)]
    async fn frames_ready_together_become_one() {
        let out = frames(vec![
            data("a"),
            data("b"),
            data("c"),
            Step::Later,
            data("d"),
        ])
        .await;
        assert_eq!(out, ["abc", "d"]);
    }

    #[tokio::test(start_paused = true)]
    async fn chunks_decoded_one_at_a_time_are_merged() {
        // An HTTP/1 upstream body: each chunk is ready one hop of its connection task
        // after the previous one was taken.
        let steps = vec![
            data("a"),
            Step::Soon,
            data("b"),
            Step::Soon,
            data("c"),
            Step::Later,
            data("d"),
        ];
        assert_eq!(frames(steps).await, ["abc", "d"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_is_not_held_back() {
        // Data comes in every round: waiting for rounds as long as they bring data would
        // make this one frame, sent at the end. One round per frame sends it as it comes.
        let mut steps = vec![data("a"), Step::Soon, data("b")];
        for event in ["c", "d", "e", "f", "g", "h"] {
            steps.extend([Step::NextRound, data(event)]);
        }
        let out = frames(steps).await;
        assert!(out.len() >= 3, "{out:?}");
        assert!(out[0].starts_with("ab"), "{out:?}");
        assert_eq!(out.concat(), "abcdefgh");
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_waits_for_data_that_has_not_arrived() {
        let out = frames(vec![
            data("a"),
            Step::Later,
            data("b"),
            Step::Later,
            data("c"),
        ])
        .await;
        assert_eq!(out, ["a", "b", "c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_look_in_the_same_round_keeps_waiting() {
        // hyper polls a body again within one task poll when its write side is ready; that
        // is not the end of the round, so the frame is not handed out yet.
        let mut body = body(vec![data("a"), Step::Soon, data("b"), Step::Later]);
        let first = tokio::spawn(async move {
            std::future::poll_fn(|cx| {
                assert!(Pin::new(&mut body).poll_frame(cx).is_pending());
                assert!(Pin::new(&mut body).poll_frame(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            body.frame().await.unwrap().unwrap()
        });
        assert_eq!(first.await.unwrap().into_data().unwrap(), "ab");
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_from_another_task_does_not_wait_for_the_round() {
        let mut body = body(vec![data("a"), Step::Soon, data("b"), Step::Later]);
        let first = tokio::spawn(async move {
            std::future::poll_fn(|cx| {
                assert!(Pin::new(&mut body).poll_frame(cx).is_pending());
                // The round's end would wake this task, not the one polling now.
                let mut elsewhere = Context::from_waker(Waker::noop());
                let frame = match Pin::new(&mut body).poll_frame(&mut elsewhere) {
                    Poll::Ready(Some(Ok(frame))) => frame,
                    other => panic!("{other:?}"),
                };
                Poll::Ready(frame)
            })
            .await
        });
        assert_eq!(first.await.unwrap().into_data().unwrap(), "ab");
    }

    #[tokio::test(start_paused = true)]
    async fn trailers_and_the_end_follow_the_merged_data() {
        let out = frames(vec![data("a"), data("b"), Step::Trailers]).await;
        assert_eq!(out, ["ab", "T"]);
        let out = frames(vec![data("a"), Step::Soon, data("b")]).await;
        assert_eq!(out, ["ab"]);
    }

    #[tokio::test(start_paused = true)]
    async fn merged_frames_stay_small() {
        let half = "x".repeat(COALESCE_UP_TO / 2);
        let steps = vec![
            data(&half),
            Step::Soon,
            data(&half),
            data("tail"),
            Step::Later,
        ];
        let out = frames(steps).await;
        assert_eq!(out.len(), 2, "the cap ends the first frame: {out:?}");
        assert_eq!(out[0].len(), COALESCE_UP_TO);
        assert_eq!(out[1], "tail");
        let big = "x".repeat(COALESCE_UP_TO);
        let out = frames(vec![data(&big), data("tail")]).await;
        assert_eq!(out, [big.as_str(), "tail"], "a big frame passes alone");
    }
}
