//! The bytes a forwarded request keeps in memory (its body, while the app is waited for, and the
//! app's answer, kept whole until it is passed back), counted against one budget for the whole
//! server. Each byte is claimed before it is buffered, and given back when the buffer is freed:
//! the claim is owned by the buffer itself, so a request that ends, is answered, or whose
//! connection breaks gives its bytes back, whatever the path.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long what is left of a refused body is read (into nothing) before the close.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// The bytes left to claim, for all connections together.
#[derive(Debug)]
pub struct Budget {
    left: AtomicUsize,
}

impl Budget {
    pub fn new(total: usize) -> Arc<Budget> {
        Arc::new(Budget {
            left: AtomicUsize::new(total),
        })
    }

    #[cfg(test)]
    fn left(&self) -> usize {
        self.left.load(Ordering::SeqCst)
    }
}

/// Bytes claimed from a [`Budget`], given back when dropped.
struct Claim {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Claim {
    /// Claims `more` bytes; false (and nothing claimed) when the budget has not that many left.
    fn grow(&mut self, more: usize) -> bool {
        let took = self
            .budget
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(more)
            })
            .is_ok();
        if took {
            self.bytes += more;
        }
        took
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.budget.left.fetch_add(self.bytes, Ordering::SeqCst);
    }
}

/// A collected body and its claim: the claim goes when the last copy of the bytes does.
struct Owned {
    data: Vec<u8>,
    _claim: Claim,
}

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// Why a body was not collected.
#[derive(Debug, PartialEq, Eq)]
pub enum Short {
    /// Larger than the limit (by its length, before anything is read, or as it arrives).
    TooLarge,
    /// The budget has not the bytes left.
    OverBudget,
    /// The body broke off.
    Broken,
}

/// Reads a body whole, at most `limit` bytes, claiming from `budget` the memory it takes before
/// taking it: its whole length at once when the length is known, before anything is read.
pub async fn collect<B>(budget: &Arc<Budget>, body: &mut B, limit: usize) -> Result<Bytes, Short>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut claim = Claim {
        budget: budget.clone(),
        bytes: 0,
    };
    let mut data = Vec::new();
    if let Some(length) = body.size_hint().exact() {
        let length = usize::try_from(length).map_err(|_| Short::TooLarge)?;
        grow(&mut data, &mut claim, length, limit)?;
    }
    while let Some(frame) = body.frame().await {
        let Ok(chunk) = frame.map_err(|_| Short::Broken)?.into_data() else {
            continue; // trailers
        };
        let need = data.len().saturating_add(chunk.len());
        grow(&mut data, &mut claim, need, limit)?;
        data.extend_from_slice(&chunk);
    }
    Ok(Bytes::from_owner(Owned {
        data,
        _claim: claim,
    }))
}

/// Makes room in `data` for `need` bytes in all, claimed from the budget first: doubling, as a
/// Vec would, up to `limit`.
fn grow(data: &mut Vec<u8>, claim: &mut Claim, need: usize, limit: usize) -> Result<(), Short> {
    if need > limit {
        return Err(Short::TooLarge);
    }
    if need <= data.capacity() {
        return Ok(());
    }
    let want = need.max(data.capacity().saturating_mul(2)).min(limit);
    if !claim.grow(want - data.capacity()) {
        return Err(Short::OverBudget);
    }
    data.reserve_exact(want - data.len());
    Ok(())
}

/// Reads what is left of a refused body, briefly and into nothing: closing with it unread would
/// reset the connection, and the client could lose the answer.
pub async fn drain<B: Body + Unpin>(body: &mut B) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;

    fn chunks(n: usize, size: usize) -> impl Body<Data = Bytes, Error = std::io::Error> + Unpin {
        let frames = (0..n).map(move |_| Ok(Frame::data(Bytes::from(vec![b'x'; size]))));
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn bytes_are_claimed_while_kept_and_given_back_when_freed() {
        let budget = Budget::new(1000);
        let a = collect(&budget, &mut Full::new(Bytes::from(vec![1u8; 300])), 500)
            .await
            .unwrap();
        assert_eq!((a.len(), budget.left()), (300, 700));
        let copy = a.clone();
        drop(a);
        assert_eq!(budget.left(), 700, "a copy keeps the claim");
        drop(copy);
        assert_eq!(budget.left(), 1000);

        // Of unknown length: claimed as the buffer grows.
        let b = collect(&budget, &mut chunks(5, 100), 500).await.unwrap();
        assert_eq!(b.len(), 500);
        assert_eq!(budget.left(), 500);
        drop(b);
        assert_eq!(budget.left(), 1000);
    }

    #[tokio::test]
    async fn beyond_the_budget_or_the_limit_nothing_stays_claimed() {
        let budget = Budget::new(1000);
        let kept = collect(&budget, &mut Full::new(Bytes::from(vec![1u8; 800])), 900)
            .await
            .unwrap();
        let mut known = Full::new(Bytes::from(vec![1u8; 300]));
        assert_eq!(
            collect(&budget, &mut known, 900).await,
            Err(Short::OverBudget)
        );
        assert_eq!(
            collect(&budget, &mut chunks(3, 100), 900).await,
            Err(Short::OverBudget)
        );
        assert_eq!(budget.left(), 200);
        drop(kept);
        assert_eq!(
            collect(&budget, &mut chunks(10, 100), 900).await,
            Err(Short::TooLarge)
        );
        let mut declared = Full::new(Bytes::from(vec![1u8; 901]));
        assert_eq!(
            collect(&budget, &mut declared, 900).await,
            Err(Short::TooLarge)
        );
        assert_eq!(budget.left(), 1000);
    }
}
