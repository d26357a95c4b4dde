-- The inbox: open tasks of a user, soonest due first (tasks without a due date last).
-- One index per way a task can be the user's (their role, assigned to them, claimed by
-- them), in the inbox's order, so that each of the inbox's subqueries stops after a
-- page of rows whatever the number of open tasks (Store::list_tasks).
CREATE INDEX tasks_open_role_due ON tasks (role, COALESCE(due_at, 9223372036854775807), priority DESC, created_at, id) WHERE status = 'open';
CREATE INDEX tasks_open_assignee_due ON tasks (assignee, COALESCE(due_at, 9223372036854775807), priority DESC, created_at, id) WHERE status = 'open';
CREATE INDEX tasks_open_claimed_due ON tasks (claimed_by, COALESCE(due_at, 9223372036854775807), priority DESC, created_at, id) WHERE status = 'open';
