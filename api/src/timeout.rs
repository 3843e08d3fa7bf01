//! [`Timeout`]: how long a memoized result lives.

use std::time::Duration;

/// How long a stored result lives.
///
/// `Timeout` has exactly two conversions, `From<u64>` (seconds) and `From<Duration>`, so
/// `#[memoize(timeout = 50)]` infers `50u64`. Zero (`0` or `Duration::ZERO`) means: the call
/// still reads the cache, but stores nothing.
///
/// ```
/// use std::time::Duration;
/// use memokit::Timeout;
///
/// assert_eq!(Timeout::from(60), Timeout::After(Duration::from_secs(60)));
/// assert_eq!(Timeout::from(Duration::from_millis(5)), Timeout::After(Duration::from_millis(5)));
/// assert_eq!(Timeout::default(), Timeout::Default);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Timeout {
    /// The memoizer's default timeout (300 s unless configured), resolved at every call.
    #[default]
    Default,
    /// No deadline: the result leaves only when deleted or evicted.
    Never,
    /// The result expires this long after it was stored. Zero stores nothing.
    After(Duration),
}

impl From<u64> for Timeout {
    /// Seconds.
    fn from(secs: u64) -> Self {
        Timeout::After(Duration::from_secs(secs))
    }
}

impl From<Duration> for Timeout {
    fn from(d: Duration) -> Self {
        Timeout::After(d)
    }
}

impl Timeout {
    /// Resolves `Default` against the memoizer's default. `None` = no deadline.
    pub(crate) fn resolve(self, default: Timeout) -> Option<Duration> {
        match self {
            Timeout::Default => match default {
                Timeout::Default => Some(crate::memoizer::DEFAULT_TIMEOUT),
                other => other.resolve(Timeout::Never),
            },
            Timeout::Never => None,
            Timeout::After(d) => Some(d),
        }
    }
}
