-- Customer notices are keyed per log row and run (`notice-upcoming:<log id>:<run name>`), no longer per
-- row alone: a resume re-points a row to a new run, and its customer is told again. The notices sent
-- before keep their meaning: each old key gets the run its payload recorded (detail.customer.runName), so
-- a customer told in a run still running is not told a second time, and an abort of that run cancels it.
-- Re-runnable: only keys of the old form change, and never onto a key already taken.
UPDATE event_outbox o
   SET event_key = o.event_key || ':' || (o.detail -> 'customer' ->> 'runName')
 WHERE o.event_key ~ '^notice-(upcoming|cancelled):[0-9]+$'
   AND o.detail -> 'customer' ->> 'runName' IS NOT NULL
   AND NOT EXISTS (
       SELECT 1 FROM event_outbox n WHERE n.event_key = o.event_key || ':' || (o.detail -> 'customer' ->> 'runName')
   );
