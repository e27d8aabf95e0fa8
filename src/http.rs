//! What the two HTTP servers (dbserver and frontend API) share: error replies and sockets.
//!
//! As in warp's `todos` example, handlers return a [`Problem`] rejection and one
//! `recover` turns every rejection into a status and a one-line plain-text body that says
//! what was wrong, e.g. `400 the key is 300 bytes long; the limit is 250`.

use std::convert::Infallible;

use tokio::net::TcpListener;
use warp::http::StatusCode;
use warp::reject::{LengthRequired, MethodNotAllowed, PayloadTooLarge};
use warp::{Rejection, Reply};

use crate::key::KeyError;

/// A request that failed with a status and a message for the person who sent it.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub message: String,
}

impl warp::reject::Reject for Problem {}

impl Problem {
    /// 400: the key in the path is not a valid key.
    pub fn bad_key(error: KeyError) -> Rejection {
        warp::reject::custom(Problem {
            status: StatusCode::BAD_REQUEST,
            message: error.to_string(),
        })
    }

    /// 500: something broke on our side.
    pub fn internal(message: String) -> Problem {
        tracing::error!("{message}");
        Problem {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message,
        }
    }
}

/// A plain-text reply.
pub fn text(status: StatusCode, body: String) -> warp::reply::Response {
    warp::reply::with_status(body + "\n", status).into_response()
}

/// A value reply: the bytes as they are, without copying them.
pub fn value(value: bytes::Bytes) -> warp::reply::Response {
    let mut response = warp::http::Response::new(value).into_response();
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// The `/metrics` reply.
pub fn metrics(text: String) -> warp::reply::Response {
    let mut response = warp::http::Response::new(text).into_response();
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}

/// Turns every rejection into a clear plain-text error reply.
pub async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    let (status, message) = if let Some(problem) = rejection.find::<Problem>() {
        (problem.status, problem.message.clone())
    } else if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "no such route".to_owned())
    } else if rejection.find::<PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the value is larger than the limit of {}",
                bytesize::ByteSize::b(crate::dbserver::MAX_VALUE_BYTES)
                    .display()
                    .iec()
            ),
        )
    } else if rejection.find::<LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "send the value with a Content-Length header".to_owned(),
        )
    } else if rejection.find::<MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed here".to_owned(),
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            format!("bad request: {rejection:?}"),
        )
    };
    Ok(text(status, message))
}

/// Sets TCP_NODELAY on the listening socket. Linux copies it to every accepted socket, and
/// warp accepts connections itself, so this is where it can be set. Without it a small
/// reply can wait ~40 ms for a delayed ACK.
pub fn set_nodelay(listener: &TcpListener) {
    if let Err(e) = socket2::SockRef::from(listener).set_tcp_nodelay(true) {
        tracing::warn!("could not set TCP_NODELAY: {e}");
    }
}
