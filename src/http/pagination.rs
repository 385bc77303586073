//! DRF-style page-number pagination: `page` and `page_size` query parameters and a
//! `{"count", "count_exact", "next", "previous", "results"}` envelope whose links are
//! absolute URLs. Counting stops at [`COUNT_BOUND`], so a list costs the same to page
//! through however many items match.

use std::num::IntErrorKind;

use serde::Serialize;

use super::error::ApiError;

pub const DEFAULT_PAGE_SIZE: u64 = 20;
pub const MAX_PAGE_SIZE: u64 = 100;

/// Counts are exact up to this many items; beyond it `count` is this bound and
/// `count_exact` false.
pub const COUNT_BOUND: u64 = 10_000;

/// How many items a list has: exactly `count`, or (not `exact`) more than `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Total {
    pub count: u64,
    pub exact: bool,
}

impl Total {
    /// The total of a count that stopped at `COUNT_BOUND + 1` items.
    pub fn from_bounded(counted: u64) -> Self {
        Self {
            count: counted.min(COUNT_BOUND),
            exact: counted <= COUNT_BOUND,
        }
    }
}

/// The requested page: 1-based number and size (already capped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub number: u64,
    pub size: u64,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            number: 1,
            size: DEFAULT_PAGE_SIZE,
        }
    }
}

impl PageRequest {
    /// Takes `page` or `page_size` from a query parameter: `None` if `name` is neither,
    /// else whether the value is good. A size above the maximum is capped, like DRF; any
    /// integer of at least 1 is good (as in DRF, where Python's are unbounded), so one past
    /// `u64` counts as `u64::MAX`: the largest size, or a page past the last.
    pub fn accept(&mut self, name: &str, value: &str) -> Option<Result<(), &'static str>> {
        let slot = match name {
            "page" => &mut self.number,
            "page_size" => &mut self.size,
            _ => return None,
        };
        let number = match value.parse::<u64>() {
            Err(e) if *e.kind() == IntErrorKind::PosOverflow => Ok(u64::MAX),
            other => other,
        };
        let parsed = match number {
            Ok(n) if n >= 1 => {
                *slot = n;
                Ok(())
            }
            _ => Err("A valid integer of at least 1 is required."),
        };
        self.size = self.size.min(MAX_PAGE_SIZE);
        Some(parsed)
    }

    /// The row offset, or 404 (DRF: "Invalid page") past the last page. The first page
    /// always exists, empty or not. Past the count's bound the last page is unknown: any
    /// offset the database can take is tried, and a page that comes back empty is past
    /// the end.
    pub fn offset(&self, total: Total) -> Result<i64, ApiError> {
        if total.exact {
            let last = total.count.div_ceil(self.size).max(1);
            if self.number > last {
                return Err(ApiError::NotFound);
            }
        }
        self.start().ok_or(ApiError::NotFound)
    }

    /// The page's first row, whatever the total; `None` past what a database can offset.
    pub fn start(&self) -> Option<i64> {
        (self.number - 1)
            .checked_mul(self.size)
            .and_then(|o| i64::try_from(o).ok())
    }

    /// Rows to fetch for this page: past the count's bound one more, so that the page
    /// itself shows whether another follows it.
    pub fn rows_to_fetch(&self, total: Total) -> u64 {
        self.size + u64::from(!total.exact)
    }
}

/// One page of a list, with absolute links to its neighbours.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// Items over all pages, counted up to 10,000: when more match, `count` is 10,000
    /// and `count_exact` is false.
    pub count: u64,
    /// Whether `count` is the exact number of items (false: there are more).
    pub count_exact: bool,
    /// The next page, or `null` on the last.
    #[schema(format = "uri")]
    pub next: Option<String>,
    /// The previous page, or `null` on the first.
    #[schema(format = "uri")]
    pub previous: Option<String>,
    pub results: Vec<T>,
}

impl<T> Page<T> {
    /// The envelope for `results` of page `request` out of `total` items; the links repeat
    /// the other `query` parameters on `base_url`, sorted by name as DRF does, the first
    /// page's link without `page`. `results` are the rows fetched as
    /// [`PageRequest::rows_to_fetch`] says.
    pub fn new(
        mut results: Vec<T>,
        total: Total,
        request: PageRequest,
        base_url: &str,
        query: &[(String, String)],
    ) -> Self {
        let link = |number: u64| {
            let mut pairs: Vec<(&str, String)> = query
                .iter()
                .filter(|(k, _)| k != "page")
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            if number > 1 {
                pairs.push(("page", number.to_string()));
            }
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            match serde_urlencoded::to_string(&pairs) {
                Ok(q) if !q.is_empty() => format!("{base_url}?{q}"),
                _ => base_url.to_owned(),
            }
        };
        let has_next = if total.exact {
            request.number.saturating_mul(request.size) < total.count
        } else {
            results.len() as u64 > request.size
        };
        results.truncate(usize::try_from(request.size).unwrap_or(usize::MAX));
        Self {
            count: total.count,
            count_exact: total.exact,
            next: has_next.then(|| link(request.number + 1)),
            previous: (request.number > 1).then(|| link(request.number - 1)),
            results,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(count: u64) -> Total {
        Total { count, exact: true }
    }

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn sizes_are_capped_and_bad_values_named() {
        let mut request = PageRequest::default();
        assert_eq!(request.accept("page_size", "500"), Some(Ok(())));
        assert_eq!(request.size, MAX_PAGE_SIZE);
        assert!(matches!(request.accept("page", "0"), Some(Err(_))));
        assert!(matches!(request.accept("page_size", ""), Some(Err(_))));
        assert_eq!(request.accept("search", "x"), None);
        // Any integer of at least 1, as large as it comes (the document sets no maximum).
        let huge = "9".repeat(40);
        assert_eq!(request.accept("page", &huge), Some(Ok(())));
        assert_eq!(request.number, u64::MAX);
        assert_eq!(request.accept("page_size", &huge), Some(Ok(())));
        assert_eq!(request.size, MAX_PAGE_SIZE);
        assert!(
            request.offset(exact(1000)).is_err(),
            "a page that far is past the last"
        );
        assert!(matches!(request.accept("page", "-1"), Some(Err(_))));
    }

    #[test]
    fn first_page_always_exists_and_beyond_the_last_is_not_found() {
        let request = PageRequest {
            number: 1,
            size: 20,
        };
        assert_eq!(request.offset(exact(0)).ok(), Some(0));
        let third = PageRequest {
            number: 3,
            size: 20,
        };
        assert_eq!(third.offset(exact(41)).ok(), Some(40));
        assert!(third.offset(exact(40)).is_err());
    }

    #[test]
    fn links_keep_other_parameters_and_drop_page_one() {
        let q = query(&[("search", "a b&c"), ("page", "2"), ("page_size", "5")]);
        let page = Page::new(
            vec![0; 5],
            exact(11),
            PageRequest { number: 2, size: 5 },
            "http://x/users",
            &q,
        );
        assert_eq!(
            page.next.as_deref(),
            Some("http://x/users?page=3&page_size=5&search=a+b%26c")
        );
        assert_eq!(
            page.previous.as_deref(),
            Some("http://x/users?page_size=5&search=a+b%26c")
        );
        let last = Page::new(
            vec![0],
            exact(11),
            PageRequest { number: 3, size: 5 },
            "http://x/users",
            &q,
        );
        assert_eq!(last.next, None);
        let only = Page::<u8>::new(
            vec![],
            exact(0),
            PageRequest::default(),
            "http://x/users",
            &[],
        );
        assert_eq!((only.next, only.previous), (None, None));
    }

    #[test]
    fn counts_stop_at_the_bound() {
        assert_eq!(Total::from_bounded(0), exact(0));
        assert_eq!(Total::from_bounded(COUNT_BOUND), exact(COUNT_BOUND));
        let more = Total::from_bounded(COUNT_BOUND + 1);
        assert_eq!(
            more,
            Total {
                count: COUNT_BOUND,
                exact: false
            }
        );
        // Past the bound any page may exist; the one past the end is found empty.
        let far = PageRequest {
            number: 1_000_000,
            size: 20,
        };
        assert_eq!(far.offset(more).ok(), Some(19_999_980));
        assert!(far.offset(exact(COUNT_BOUND)).is_err());
        let beyond_sql = PageRequest {
            number: u64::MAX,
            size: 1,
        };
        assert!(
            beyond_sql.offset(more).is_err(),
            "an offset SQL cannot take"
        );
        assert_eq!(far.rows_to_fetch(more), 21);
        assert_eq!(far.rows_to_fetch(exact(5)), 20);
    }

    #[test]
    fn past_the_bound_the_extra_row_says_whether_a_next_page_exists() {
        let more = Total::from_bounded(COUNT_BOUND + 1);
        let request = PageRequest { number: 2, size: 3 };
        let page = Page::new(vec![1, 2, 3, 4], more, request, "http://x/users", &[]);
        assert_eq!(page.results, vec![1, 2, 3]);
        assert_eq!(page.next.as_deref(), Some("http://x/users?page=3"));
        assert_eq!((page.count, page.count_exact), (COUNT_BOUND, false));
        let last = Page::new(vec![1, 2], more, request, "http://x/users", &[]);
        assert_eq!((last.results.len(), last.next), (2, None));
        assert!(last.previous.is_some());
    }
}
