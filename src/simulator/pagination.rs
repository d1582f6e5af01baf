//! bunq's list paging: `count` (default 10, at most 200), `older_id`/`newer_id` filters, and the
//! `Pagination` object with relative `/v1/...` links that echo `count`.
//!
//! A `count` outside 1..=200 is refused with 400 rather than clamped (bunq's real reply is
//! undocumented): a client asking for more than bunq serves should find out in tests. Giving both
//! `older_id` and `newer_id` is refused too.

use super::wire::ApiError;
use crate::bunq::model::Pagination;

/// Page size when the client does not say.
pub(crate) const DEFAULT_COUNT: usize = 10;
/// Largest page bunq serves.
pub(crate) const MAX_COUNT: usize = 200;

/// What the query asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageRequest {
    /// Items per page.
    pub(crate) count: usize,
    /// Only items with a smaller id (older).
    pub(crate) older_id: Option<u64>,
    /// Only items with a larger id (newer); the page holds the ones just above it.
    pub(crate) newer_id: Option<u64>,
}

impl PageRequest {
    /// Reads `count`, `older_id` and `newer_id` from a query string; other parameters are ignored.
    pub(crate) fn parse(query: &str) -> Result<Self, ApiError> {
        let mut page = PageRequest {
            count: DEFAULT_COUNT,
            older_id: None,
            newer_id: None,
        };
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("{name} must be a number.")))
            };
            match name {
                "count" => {
                    let count = usize::try_from(number()?).unwrap_or(usize::MAX);
                    if !(1..=MAX_COUNT).contains(&count) {
                        return Err(ApiError::bad_request(format!(
                            "count must be between 1 and {MAX_COUNT}."
                        )));
                    }
                    page.count = count;
                }
                "older_id" => page.older_id = Some(number()?),
                "newer_id" => page.newer_id = Some(number()?),
                _ => {}
            }
        }
        if page.older_id.is_some() && page.newer_id.is_some() {
            return Err(ApiError::bad_request(
                "older_id and newer_id cannot be combined.",
            ));
        }
        Ok(page)
    }

    /// Cuts one page out of `items` (sorted by id, newest first) and links its neighbours under
    /// `path` (e.g. `/v1/user/1/credential-password-ip/2/ip`).
    pub(crate) fn apply<T: Clone>(
        &self,
        items: &[T],
        id_of: impl Fn(&T) -> u64,
        path: &str,
    ) -> (Vec<T>, Pagination) {
        let page: Vec<T> = if let Some(older) = self.older_id {
            items
                .iter()
                .filter(|item| id_of(item) < older)
                .take(self.count)
                .cloned()
                .collect()
        } else if let Some(newer) = self.newer_id {
            let newer_items: Vec<&T> = items.iter().filter(|item| id_of(item) > newer).collect();
            let skip = newer_items.len().saturating_sub(self.count);
            newer_items.into_iter().skip(skip).cloned().collect()
        } else {
            items.iter().take(self.count).cloned().collect()
        };
        let link = |param: &str, id: u64| format!("{path}?count={}&{param}={id}", self.count);
        let newest = page.first().map(&id_of);
        let oldest = page.last().map(&id_of);
        let older_url = oldest
            .filter(|oldest| items.iter().any(|item| id_of(item) < *oldest))
            .map(|oldest| link("older_id", oldest));
        let newer_url = newest
            .filter(|newest| items.iter().any(|item| id_of(item) > *newest))
            .map(|newest| link("newer_id", newest));
        let future_url = if newer_url.is_some() {
            None
        } else {
            newest.or(self.newer_id).map(|id| link("newer_id", id))
        };
        (
            page,
            Pagination {
                future_url,
                newer_url,
                older_url,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/v1/x";

    fn ids(newest: u64) -> Vec<u64> {
        (1..=newest).rev().collect()
    }

    #[test]
    fn default_page_is_ten_newest_with_an_older_link() {
        let request = PageRequest::parse("").unwrap();
        let (page, links) = request.apply(&ids(25), |id| *id, PATH);
        assert_eq!(page, (16..=25).rev().collect::<Vec<_>>());
        assert_eq!(
            links.older_url.as_deref(),
            Some("/v1/x?count=10&older_id=16")
        );
        assert_eq!(links.newer_url, None);
        assert_eq!(
            links.future_url.as_deref(),
            Some("/v1/x?count=10&newer_id=25")
        );
    }

    #[test]
    fn last_page_has_no_older_link() {
        let request = PageRequest::parse("count=10&older_id=6").unwrap();
        let (page, links) = request.apply(&ids(25), |id| *id, PATH);
        assert_eq!(page, vec![5, 4, 3, 2, 1]);
        assert_eq!(links.older_url, None);
        assert_eq!(
            links.newer_url.as_deref(),
            Some("/v1/x?count=10&newer_id=5")
        );
        assert_eq!(links.future_url, None);
    }

    #[test]
    fn newer_id_returns_the_page_just_above_it() {
        let request = PageRequest::parse("count=3&newer_id=10").unwrap();
        let (page, links) = request.apply(&ids(25), |id| *id, PATH);
        assert_eq!(page, vec![13, 12, 11]);
        assert_eq!(
            links.newer_url.as_deref(),
            Some("/v1/x?count=3&newer_id=13")
        );
        assert_eq!(
            links.older_url.as_deref(),
            Some("/v1/x?count=3&older_id=11")
        );
    }

    #[test]
    fn count_outside_one_to_two_hundred_is_refused() {
        assert_eq!(PageRequest::parse("count=200").unwrap().count, 200);
        for bad in ["count=201", "count=0", "count=x", "older_id=1&newer_id=2"] {
            assert_eq!(PageRequest::parse(bad).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn empty_list_has_all_links_null() {
        let (page, links) = PageRequest::parse("")
            .unwrap()
            .apply(&[], |id: &u64| *id, PATH);
        assert!(page.is_empty());
        assert_eq!(links, Pagination::default());
    }
}
