//! HTTP to URLs others gave us (model outputs, webhooks), without letting them lead into our own
//! network (docs/design.md, "Failure rules"). One client setup for both: names are resolved by
//! [`CheckedResolver`], which refuses a name if any of its addresses is not allowed, so the address
//! checked is the address connected to (a second lookup cannot answer otherwise); an address
//! written in the URL is checked by [`check_url`]; no proxy from the environment is used; no
//! redirect is followed by the client.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::domain::network::{is_local, is_public};

/// Which addresses may be connected to.
pub type AddressCheck = fn(IpAddr) -> bool;

/// Only public addresses, or, with local URLs allowed (a local stack), loopback and private ones
/// too; link-local never.
pub fn address_check(allow_local: bool) -> AddressCheck {
    if allow_local {
        |ip| is_public(ip) || is_local(ip)
    } else {
        is_public
    }
}

/// The refusal of a name or address, carried through the HTTP client's errors.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Resolves names once and answers only addresses that pass the check; a name with any address
/// that does not is refused whole (a name that is partly ours is not to be trusted).
#[derive(Debug, Clone, Copy)]
pub struct CheckedResolver {
    check: AddressCheck,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let check = self.check;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // The port is the URL's: the client puts it in place of this one.
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no address").into());
            }
            if !found.iter().all(|address| check(address.ip())) {
                return Err(Box::new(Refused(
                    "the host resolves to a private, loopback or reserved address".into(),
                )) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// A client builder for outbound calls: the checked resolver, no proxy, no redirects.
pub fn client_builder(check: AddressCheck) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(CheckedResolver { check }))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
}

/// Refuses a URL the client may not call: a scheme other than `https` (or `http` when
/// `allow_http`), no host, or an address in the URL that fails the check (the resolver never
/// sees those).
pub fn check_url(url: &Url, allow_http: bool, check: AddressCheck) -> Result<(), Refused> {
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        _ => return Err(Refused("only https URLs are called".into())),
    }
    let literal = match url.host() {
        None => return Err(Refused("no host".into())),
        Some(Host::Domain(_)) => None,
        Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
    };
    match literal {
        Some(ip) if !check(ip) => Err(Refused("a private, loopback or reserved address".into())),
        _ => Ok(()),
    }
}

/// The resolver's refusal inside an error of the client, if that is what it is.
pub fn refusal(err: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut current = Some(err);
    while let Some(cause) = current {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return Some(refused.clone());
        }
        current = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(check: AddressCheck, url: &str) -> bool {
        check_url(&Url::parse(url).unwrap(), true, check).is_ok()
    }

    #[test]
    fn local_urls_open_loopback_and_private_ranges_only() {
        let local = address_check(true);
        for url in [
            "http://127.0.0.1:8080/",
            "http://10.0.0.7/",
            "http://192.168.1.2/",
            "http://[::1]/",
            "http://[fd00::1]/",
        ] {
            assert!(allowed(local, url), "{url}");
        }
        // Instance metadata and the rest of link-local stay shut, in every form of the address.
        for url in [
            "http://169.254.169.254/",
            "http://169.254.170.2/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:0:a9fe:a9fe]/",
            "http://[fe80::1]/",
            "http://0.0.0.0/",
        ] {
            assert!(!allowed(local, url), "{url}");
            assert!(!allowed(address_check(false), url), "{url}");
        }
    }
}
