//! DRF-style page-number pagination: `page` and `page_size` query parameters and a
//! `{"count", "next", "previous", "results"}` envelope whose links are absolute URLs.

use std::num::IntErrorKind;

use serde::Serialize;

use super::error::ApiError;

pub const DEFAULT_PAGE_SIZE: u64 = 20;
pub const MAX_PAGE_SIZE: u64 = 100;

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
    /// always exists, empty or not.
    pub fn offset(&self, count: u64) -> Result<u64, ApiError> {
        let last = count.div_ceil(self.size).max(1);
        if self.number > last {
            return Err(ApiError::NotFound);
        }
        Ok((self.number - 1) * self.size)
    }
}

/// One page of a list, with absolute links to its neighbours.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// Items over all pages.
    pub count: u64,
    /// The next page, or `null` on the last.
    #[schema(format = "uri")]
    pub next: Option<String>,
    /// The previous page, or `null` on the first.
    #[schema(format = "uri")]
    pub previous: Option<String>,
    pub results: Vec<T>,
}

impl<T> Page<T> {
    /// The envelope for `results` of page `request` out of `count` items; the links repeat
    /// the other `query` parameters on `base_url`, sorted by name as DRF does, the first
    /// page's link without `page`.
    pub fn new(
        results: Vec<T>,
        count: u64,
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
        let has_next = request.number.saturating_mul(request.size) < count;
        Self {
            count,
            next: has_next.then(|| link(request.number + 1)),
            previous: (request.number > 1).then(|| link(request.number - 1)),
            results,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            request.offset(1000).is_err(),
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
        assert_eq!(request.offset(0).ok(), Some(0));
        let third = PageRequest {
            number: 3,
            size: 20,
        };
        assert_eq!(third.offset(41).ok(), Some(40));
        assert!(third.offset(40).is_err());
    }

    #[test]
    fn links_keep_other_parameters_and_drop_page_one() {
        let q = query(&[("search", "a b&c"), ("page", "2"), ("page_size", "5")]);
        let page = Page::new(
            vec![0; 5],
            11,
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
            11,
            PageRequest { number: 3, size: 5 },
            "http://x/users",
            &q,
        );
        assert_eq!(last.next, None);
        let only = Page::<u8>::new(vec![], 0, PageRequest::default(), "http://x/users", &[]);
        assert_eq!((only.next, only.previous), (None, None));
    }
}
