//! Sharded runs: one slice of a large input per process, on the schedulers
//! programmes already have (Kubernetes Indexed Jobs, Slurm job arrays).
//!
//! A study belongs to shard `h mod N`, where `h` is the first 8 bytes of
//! SHA-256 of its StudyInstanceUID, big-endian: the same on every machine,
//! build and version, so a re-run shard takes exactly the studies it had,
//! and all of a study's images land in one shard (its triage needs them
//! together). Files with no study (unreadable headers) are placed by path.

use sha2::{Digest, Sha256};

/// Shard `index` of `count` (0-based, as Kubernetes numbers completions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// Why the shard could not be worked out.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ShardError {
    #[error("--shard {0:?}: expected I/N with 0 <= I < N, e.g. 0/4")]
    Syntax(String),
    #[error("{var}={value:?} is not a shard index below the count {count}")]
    Index { var: &'static str, value: String, count: usize },
    #[error("JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but the shard count is not: pass --shards N or set NIGHTSCREEN_SHARDS to the Job's completions")]
    NoCount,
}

/// The environment a scheduler gives each task, read through `var` so the
/// rules can be tested without touching the process's environment.
pub fn from_environment(
    var: impl Fn(&str) -> Option<String>,
    count: Option<usize>,
) -> Result<Option<Shard>, ShardError> {
    if let Some(index) = var("JOB_COMPLETION_INDEX") {
        let count = count
            .or_else(|| var("NIGHTSCREEN_SHARDS").and_then(|c| c.trim().parse().ok()))
            .ok_or(ShardError::NoCount)?;
        return checked("JOB_COMPLETION_INDEX", &index, 0, count).map(Some);
    }
    if let (Some(id), Some(total)) = (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT")) {
        // Arrays may start anywhere (--array=1-4): index from the minimum.
        let min = var("SLURM_ARRAY_TASK_MIN").and_then(|m| m.trim().parse::<usize>().ok()).unwrap_or(0);
        let count = count.or_else(|| total.trim().parse().ok()).unwrap_or(0);
        return checked("SLURM_ARRAY_TASK_ID", &id, min, count).map(Some);
    }
    Ok(None)
}

fn checked(var: &'static str, value: &str, offset: usize, count: usize) -> Result<Shard, ShardError> {
    let bad = || ShardError::Index { var, value: value.to_string(), count };
    let index = value.trim().parse::<usize>().map_err(|_| bad())?.checked_sub(offset).ok_or_else(bad)?;
    if count == 0 || index >= count {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

impl std::str::FromStr for Shard {
    type Err = ShardError;

    /// "I/N".
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || ShardError::Syntax(text.to_string());
        let (i, n) = text.split_once('/').ok_or_else(syntax)?;
        let (index, count): (usize, usize) =
            (i.trim().parse().map_err(|_| syntax())?, n.trim().parse().map_err(|_| syntax())?);
        if count == 0 || index >= count {
            return Err(syntax());
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// Which shard of `count` owns `key` (a StudyInstanceUID, or a path).
    pub fn owner(key: &str, count: usize) -> usize {
        let digest = Sha256::digest(key.as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(head) % count.max(1) as u64) as usize
    }

    pub fn owns(&self, key: &str) -> bool {
        Self::owner(key, self.count) == self.index
    }

    /// "shard-01-of-04": the shard's folder under `OUT/shards/` and the
    /// prefix of its part files, so shards sharing OUT never clobber
    /// each other.
    pub fn tag(&self) -> String {
        format!("shard-{:02}-of-{:02}", self.index, self.count)
    }

    /// The shard a tag names.
    pub fn from_tag(tag: &str) -> Option<Self> {
        let rest = tag.strip_prefix("shard-")?;
        let (i, n) = rest.split_once("-of-")?;
        let (index, count) = (i.parse().ok()?, n.parse().ok()?);
        (index < count).then_some(Self { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_owner_of_a_uid_is_fixed_for_ever() {
        // Pinned: a change here re-shards every programme's archive.
        assert_eq!(Shard::owner("1.2.826.0.1.3680043.8.498.1", 4), Shard::owner("1.2.826.0.1.3680043.8.498.1", 4));
        let digest = Sha256::digest(b"2.25.1");
        let expected = (u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % 7) as usize;
        assert_eq!(Shard::owner("2.25.1", 7), expected);
        assert_eq!(Shard::owner("2.25.1", 1), 0);
        let counts = (0..4000).fold([0usize; 4], |mut c, i| {
            c[Shard::owner(&format!("2.25.{i}"), 4)] += 1;
            c
        });
        assert!(counts.iter().all(|&c| (900..1100).contains(&c)), "{counts:?}");
    }

    #[test]
    fn shards_come_from_the_flag_kubernetes_or_slurm() {
        assert_eq!("1/4".parse(), Ok(Shard { index: 1, count: 4 }));
        assert!("4/4".parse::<Shard>().is_err() && "x/4".parse::<Shard>().is_err() && "1".parse::<Shard>().is_err());
        assert_eq!(
            from_environment(env(&[("JOB_COMPLETION_INDEX", "2")]), Some(3)),
            Ok(Some(Shard { index: 2, count: 3 }))
        );
        assert_eq!(
            from_environment(env(&[("JOB_COMPLETION_INDEX", "2"), ("NIGHTSCREEN_SHARDS", "5")]), None),
            Ok(Some(Shard { index: 2, count: 5 }))
        );
        assert_eq!(from_environment(env(&[("JOB_COMPLETION_INDEX", "2")]), None), Err(ShardError::NoCount));
        assert!(from_environment(env(&[("JOB_COMPLETION_INDEX", "3")]), Some(3)).is_err());
        let slurm = [("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_COUNT", "4"), ("SLURM_ARRAY_TASK_MIN", "1")];
        assert_eq!(from_environment(env(&slurm), None), Ok(Some(Shard { index: 3, count: 4 })));
        assert_eq!(from_environment(env(&[]), None), Ok(None));
        let tag = Shard { index: 3, count: 12 }.tag();
        assert_eq!(tag, "shard-03-of-12");
        assert_eq!(Shard::from_tag(&tag), Some(Shard { index: 3, count: 12 }));
    }
}
