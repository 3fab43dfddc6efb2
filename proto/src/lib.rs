//! The xDS contract both planes share: the delta transport (`xds`) and the config
//! resources it carries (`config`), with their type URLs.

pub mod xds {
    tonic::include_proto!("nantian.xds.v1");
}

pub mod config {
    tonic::include_proto!("nantian.config.v1");
}

pub use prost_types::Any;

/// Type URLs of the config resources, as carried in `Any`.
pub mod type_url {
    pub const LISTENER: &str = "type.googleapis.com/nantian.config.v1.Listener";
    pub const ROUTE: &str = "type.googleapis.com/nantian.config.v1.Route";
    pub const BACKEND: &str = "type.googleapis.com/nantian.config.v1.Backend";
    pub const FILTER_MODULE: &str = "type.googleapis.com/nantian.config.v1.FilterModule";
}

/// A config resource that travels over xDS.
pub trait ConfigResource: prost::Message + Default + Sized {
    const TYPE_URL: &'static str;
    fn resource_name(&self) -> &str;

    fn to_any(&self) -> Any {
        Any {
            type_url: Self::TYPE_URL.to_string(),
            value: self.encode_to_vec(),
        }
    }
}

macro_rules! config_resource {
    ($ty:ty, $url:expr) => {
        impl ConfigResource for $ty {
            const TYPE_URL: &'static str = $url;
            fn resource_name(&self) -> &str {
                &self.name
            }
        }
    };
}

config_resource!(config::Listener, type_url::LISTENER);
config_resource!(config::Route, type_url::ROUTE);
config_resource!(config::Backend, type_url::BACKEND);
config_resource!(config::FilterModule, type_url::FILTER_MODULE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_round_trip_keeps_type_and_fields() {
        let route = config::Route {
            name: "route/default/r/rule/0".into(),
            listeners: vec!["listener/default/gw/http".into()],
            ..Default::default()
        };
        let any = route.to_any();
        assert_eq!(any.type_url, type_url::ROUTE);
        let back = <config::Route as prost::Message>::decode(any.value.as_slice()).unwrap();
        assert_eq!(back, route);
    }
}
