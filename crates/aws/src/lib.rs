//! The only code that talks to AWS. `api` is the request vocabulary and the `IamApi`
//! trait; `sdk` the aws-sdk adapter (`s3` and `eks` beside it); `budget`, `counting` and
//! `faults` wrap any `IamApi`.

pub mod api;
pub mod budget;
pub mod counting;
pub mod eks;
pub mod error;
pub mod faults;
pub mod fenced_http;
pub mod s3;
pub mod sdk;
pub mod testing;
pub mod wire_fence;
pub mod write_gate;

pub use api::{
    AssumedRole, Iam, IamApi, IamRequest, IamResponse, NewOidcProvider, NewRole, OidcProvider,
    RoleDetails, RoleState, WebIdentityToken,
};
pub use error::{AwsError, ErrorKind};
