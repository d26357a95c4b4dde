-- Each recipient's delivery of an outbox message: a JSON object from the recipient (its
-- address, or `reporter` for the sealed address) to `{state, reply, at}`, where state is
-- `sent` or `refused`. Recipients not in it are still to be tried. A message is sent to
-- each recipient in a transaction of its own, so one refused address does not stop the
-- others, and a retry never sends twice to a recipient that accepted.
ALTER TABLE outbox ADD COLUMN delivery TEXT NOT NULL DEFAULT '{}';
