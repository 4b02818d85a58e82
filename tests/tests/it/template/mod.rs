//! `template.yaml` checked against the code: every function package has its
//! resource and every resource its package; every route the routers serve
//! reaches the function that serves it and no other, and the template routes
//! nothing that no function serves; each function starts with the template's
//! variables; every queue a worker consumes has a dead-letter queue and a
//! visibility timeout of at least six times the consumer's timeout; each role
//! allows the AWS calls its function's adapters make, and uses the table's key
//! only through DynamoDB; every function logs to a group with a retention;
//! every failure has an alarm, with or without a topic; and nothing that
//! outlives a stack, or whose name stays taken after a delete, has a fixed name.

mod alarms;
mod functions;
mod iam;
mod resources;
