//! One non-dump question to the kernel (RTM_GET* for a single object), answered in full.

use futures::StreamExt as _;
use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::Handle;

/// Sends `question` and returns the kernel's answers, or its NACK as an rtnetlink error.
///
/// Asked with NLM_F_ACK so that the answer always ends with an ACK: netlink-proto drops a reply
/// the packet crate cannot decode, and without the ACK the request would then wait forever.
pub(super) async fn ask(
    handle: &Handle,
    question: RouteNetlinkMessage,
) -> Result<Vec<RouteNetlinkMessage>, rtnetlink::Error> {
    let mut request = NetlinkMessage::from(question);
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    let mut answers = handle.clone().request(request)?;
    let mut found = Vec::new();
    while let Some(answer) = answers.next().await {
        match answer.payload {
            NetlinkPayload::InnerMessage(message) => found.push(message),
            NetlinkPayload::Error(error) if error.code.is_some() => {
                return Err(rtnetlink::Error::NetlinkError(error));
            }
            // The ACK (an error message with code 0) ends the answer.
            _ => {}
        }
    }
    Ok(found)
}
