//! The `class` label: how a request ended, from its HTTP status or its gRPC status.

/// How a request ended, the `class` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// An HTTP status class, 1 to 5.
    Status(u8),
    /// gRPC `OK`.
    GrpcOk,
    /// A gRPC code that blames the caller (cancelled, invalid argument, not found, ...).
    GrpcClientError,
    /// Any other gRPC code, or a gRPC response without `grpc-status`.
    GrpcServerError,
    /// No complete response: the client went away, or the upstream failed mid-body.
    Error,
}

/// How many classes there are.
pub const CLASS_COUNT: usize = 9;

impl Class {
    /// The class of an HTTP status code.
    pub fn of_status(status: http::StatusCode) -> Self {
        Self::of_code(status.as_u16())
    }

    /// The class of a numeric status code: the rare 6xx..9xx count as 5xx, anything below 100
    /// as 1xx.
    pub fn of_code(code: u16) -> Self {
        Class::Status(((code / 100).min(5) as u8).max(1))
    }

    /// The class of a `grpc-status` code.
    pub fn of_grpc(code: u32) -> Self {
        match code {
            0 => Class::GrpcOk,
            // CANCELLED, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED,
            // FAILED_PRECONDITION, OUT_OF_RANGE, UNAUTHENTICATED.
            1 | 3 | 5 | 6 | 7 | 9 | 11 | 16 => Class::GrpcClientError,
            _ => Class::GrpcServerError,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Class::Status(1) => "1xx",
            Class::Status(2) => "2xx",
            Class::Status(3) => "3xx",
            Class::Status(4) => "4xx",
            Class::Status(_) => "5xx",
            Class::GrpcOk => "grpc_ok",
            Class::GrpcClientError => "grpc_client_error",
            Class::GrpcServerError => "grpc_server_error",
            Class::Error => "error",
        }
    }

    /// A dense index, `0..CLASS_COUNT`.
    pub fn index(self) -> usize {
        match self {
            Class::Status(n) => usize::from(n.clamp(1, 5)) - 1,
            Class::GrpcOk => 5,
            Class::GrpcClientError => 6,
            Class::GrpcServerError => 7,
            Class::Error => 8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_status_and_grpc_codes() {
        assert_eq!(Class::of_status(http::StatusCode::OK).label(), "2xx");
        assert_eq!(
            Class::of_status(http::StatusCode::SWITCHING_PROTOCOLS).label(),
            "1xx"
        );
        assert_eq!(
            Class::of_status(http::StatusCode::BAD_GATEWAY).label(),
            "5xx"
        );
        assert_eq!(Class::of_grpc(0), Class::GrpcOk);
        assert_eq!(Class::of_grpc(5), Class::GrpcClientError);
        assert_eq!(Class::of_grpc(14), Class::GrpcServerError);
        assert_eq!(Class::of_grpc(99), Class::GrpcServerError);
    }
}
