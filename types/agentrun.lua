---@meta agentrun
-- agentrun.lua -- LuaLS definitions of require "agentrun": every function, handle method and table shape.
--
-- Definitions only: nothing here runs. Point lua-language-server at the
-- folder that holds this file (`Lua.workspace.library`, see docs/lua.md) and
-- editors complete and check `store:begin{...}`, `run:step{...}` and the rest.
-- The reference is docs/lua.md; tests/lua/types_spec.lua keeps this file and
-- the real module naming the same functions, methods and fields.

-- ---------------------------------------------------------------------------
-- Names and codes

---The status of a run.
---@alias agentrun.Status
---| "running"          # being recorded through a handle
---| "completed"        # finished with an output
---| "budget_exhausted" # a budget limit was reached; resumable
---| "failed"           # finished with an error message
---| "interrupted"      # its writer went away (crash + recover, store closed); resumable
---| "waiting"          # waiting for a person's response (run:wait); resumable once answered

---The finished statuses a record given to store:write may have.
---@alias agentrun.FinalStatus "completed"|"budget_exhausted"|"failed"|"interrupted"|"waiting"

---The code of an agentrun.Error (and of `nil, message, code` from agentrun.open).
---@alias agentrun.ErrorCode
---| "EJSON"     # a value is not valid JSON, or larger than the store holds
---| "EBUSY"     # another writer held the store past busy_timeout
---| "EIO"       # the file system failed a read, write or sync
---| "EFULL"     # the disk or the store is full
---| "ECORRUPT"  # the file, or a row read back, is damaged, or not an agentrun store
---| "ESTATE"    # the call does not fit the run's state (finished, resumed elsewhere, ...)
---| "ENOTFOUND" # no run with that id
---| "EPERM"     # no permission: read-only store, file or directory
---| "EVERSION"  # the file was written by a newer agentrun (or an older one, opened read-only)
---| "ENOMEM"    # an allocation failed

---The name of a budget limit.
---@alias agentrun.LimitName
---| "max_steps"
---| "max_input_tokens"
---| "max_output_tokens"
---| "max_tokens"
---| "max_cost"
---| "max_seconds"

---A retention rule's verdict: keep the run, delete it, or nil to leave it to the policy's criteria.
---@alias agentrun.Verdict "keep"|"delete"|nil

-- ---------------------------------------------------------------------------
-- The module

---The agentrun module: `local agentrun = require "agentrun"`.
---@class agentrun
local agentrun = {}

---The library's version, e.g. "0.1.0".
---@type string
agentrun.version = "0.1.0"

---JSON null inside a value: encodes as `null`; a decoded `null` inside an array or object reads as this.
---@type lightuserdata
agentrun.null = nil

---The metatable of every agentrun.Error object: `getmetatable(e) == agentrun.Error`.
---@type table
agentrun.Error = {}

---The metatable of every agentrun.BudgetExhausted object (raised by run:check).
---@type table
agentrun.BudgetExhausted = {}

---The record factory: finished records for loops that keep their own transcript.
---@type agentrun.records
agentrun.records = {}

---Opens (creating if missing, mode 0600) the store at `location`: a file name
---(never an SQLite URI; "file:x.db" is a file of that name) or exactly ":memory:".
---Returns `nil, message, code` when it cannot be opened; bad options raise.
---@param location string
---@param opts? agentrun.OpenOptions
---@return agentrun.Store|nil store
---@return string? message why it could not be opened
---@return agentrun.ErrorCode? code "EIO", "EPERM", "ECORRUPT", "EVERSION", "EBUSY", "ENOMEM"
function agentrun.open(location, opts) end

---Marks `t` (or a new table) as a JSON array, so that an empty table encodes as `[]`; returns it.
---@generic T: table
---@param t? T
---@return T
function agentrun.array(t) end

---Encodes a Lua value as JSON text; raises agentrun.Error EJSON (with the path) for what JSON cannot hold.
---@param value any
---@return string json
function agentrun.json_encode(value) end

---Decodes JSON text; raises agentrun.Error EJSON (with the byte offset) for text that is not JSON.
---@param text string
---@return any value nil for a top-level `null`; arrays come back marked with agentrun.array
function agentrun.json_decode(text) end

---True when `v` is the agentrun.BudgetExhausted error run:check() raises.
---@param v any
---@return boolean
function agentrun.is_budget_exhausted(v) end

---True when `v` is an agentrun.Error (a store failure, bad JSON, a wrong state...).
---@param v any
---@return boolean
function agentrun.is_error(v) end

---Runs an agent loop: begins (or resumes) a run, then repeats run:check() and
---step_fn(ctx) until step_fn returns a value (completed), a budget is exhausted
---(budget_exhausted) or step_fn raises (failed). Returns the final record with its steps.
---@param store agentrun.Store
---@param spec agentrun.LoopSpec
---@param step_fn fun(ctx: agentrun.LoopContext): any return nil to go on, anything else completes the run with it
---@return agentrun.Record record with `steps`
function agentrun.loop(store, spec, step_fn) end

---Loads a retention policy file (a Lua chunk returning a policy table) in a sandbox with
---instruction and memory budgets; its rule, if any, runs sandboxed too.
---@param path string
---@return agentrun.RetentionPolicy policy
function agentrun.policy(path) end

-- ---------------------------------------------------------------------------
-- The record factory

---@class agentrun.records
local records = {}

---A completed record built from `fields` (usage and iterations computed from the steps).
---@param fields agentrun.RecordFields
---@return agentrun.Record
function records.completed(fields) end

---A budget_exhausted record from the BudgetExhausted error `err`, keeping the partial transcript of `fields`.
---@param err agentrun.BudgetExhausted|{limit: agentrun.LimitName, limit_value: number, value: number}
---@param fields agentrun.RecordFields
---@return agentrun.Record
function records.budget_exhausted(err, fields) end

---A failed record; its error text is records.error_text(err).
---@param err any
---@param fields agentrun.RecordFields
---@return agentrun.Record
function records.failed(err, fields) end

---The text a failed run keeps for an error value: a string as it is, nil as "failed",
---else its __tostring, else its string `message` field, else a text naming its type.
---@param err any
---@return string
function records.error_text(err) end

-- ---------------------------------------------------------------------------
-- The store handle

---A store handle (agentrun.open). Supports `<close>`; closing twice is harmless.
---@class agentrun.Store
local Store = {}

---Closes the store; its still-open runs are left `interrupted` (resumable). Closing twice is harmless.
function Store:close() end

---Counts and sizes of the store.
---@return agentrun.Info
function Store:info() end

---Begins a run; its row is durable when this returns.
---@param spec agentrun.RunSpec
---@return agentrun.Run run
function Store:begin(spec) end

---Writes a whole finished record and its steps in one transaction; returns its id.
---@param record agentrun.RecordInput
---@return string id
function Store:write(record) end

---The record of run `id` (with its steps when asked), or nil when there is none.
---@param id string
---@param opts? agentrun.GetOptions
---@return agentrun.Record|nil
function Store:get(id, opts) end

---Iterates over a run's steps in seq order, streamed in bounded memory: `for step in store:steps(id) do`.
---@param id string
---@param opts? agentrun.StepsOptions
---@return fun(): agentrun.Step? next
---@return nil
---@return nil
---@return userdata closing releases the iterator when a loop is left early
function Store:steps(id, opts) end

---A page of runs (records without steps) and the cursor of the next page (nil on the last).
---@param query? agentrun.RunQuery
---@return agentrun.Record[] runs
---@return string|nil next_cursor
function Store:runs(query) end

---The number of runs matching the query's filters (limit and cursors ignored).
---@param query? agentrun.RunQuery
---@return integer
function Store:count(query) end

---Totals over the runs matching the query's filters.
---@param query? agentrun.RunQuery
---@return agentrun.Stats
function Store:stats(query) end

---Clears `user` on every run of that user (the runs stay); returns how many.
---@param user string
---@return integer count
function Store:forget_user(user) end

---The latest checkpoint of a run: its state and the seq it follows, or nil when it has none.
---@param run_id string
---@return any state
---@return integer? seq
function Store:checkpoint(run_id) end

---A run handle continuing a budget_exhausted or interrupted run, or a waiting run that has its
---response (run.response), under the same id: seq, usage and elapsed time go on.
---@param run_id string
---@param opts? agentrun.ResumeOptions
---@return agentrun.Run run
function Store:resume(run_id, opts) end

---The intents of a run (run:intend), in seq order, each with its outcome.
---@param run_id string
---@return agentrun.Intent[]
function Store:intents(run_id) end

---A new running run continuing run_id as it stood after step `at` (default: its last): its steps
---1..at copied, usage their sums, the checkpoint before them, forked_from = {run=, seq=}. The
---original is never changed; at outside 0..iterations is misuse; an unknown run raises ENOTFOUND.
---@param run_id string
---@param opts? agentrun.ForkOptions
---@return agentrun.Run run
function Store:fork(run_id, opts) end

---Answers a waiting run (a step {kind = "response"}); returns its record. Raises ESTATE unless
---the run is waiting without a response (of several answers exactly one is taken).
---@param run_id string
---@param response any any JSON value
---@return agentrun.Record
function Store:respond(run_id, response) end

---Marks `running` runs idle for `stale_after` seconds as `interrupted`; returns how many.
---@param opts agentrun.RecoverOptions
---@return integer count
function Store:recover(opts) end

---Checks the store: the file's integrity (SQLite), then every run, step, checkpoint and event read back; lists damaged rows.
---@return agentrun.CheckReport report
function Store:check() end

---Appends an event to an agent's conversation stream; returns its id.
---@param event agentrun.EventSpec
---@return integer id
function Store:event(event) end

---A page of one agent's events and the cursor of the next page (nil on the last).
---@param query agentrun.EventQuery
---@return agentrun.Event[] events
---@return string|nil next_cursor
function Store:events(query) end

---The number of events matching the query's filters (limit and cursors ignored).
---@param query agentrun.EventQuery
---@return integer
function Store:count_events(query) end

---One agent's event totals.
---@param agent string
---@return agentrun.EventSummary
function Store:event_summary(agent) end

---Deletes every event of one agent; returns how many.
---@param agent string
---@return integer count
function Store:delete_events(agent) end

---Deletes events by age and per-agent count, on every agent; returns how many.
---@param policy agentrun.EventRetention
---@return integer count
function Store:retain_events(policy) end

---Deletes finished runs by age, by count per agent and by a rule; every rule runs before anything is deleted.
---@param policy agentrun.RetentionPolicy
---@return agentrun.RetentionReport
function Store:retain(policy) end

---Writes the selected runs (every one when query is nil) and their agents' events as JSON Lines:
---calls write(line) for each line (without its line break), streaming, in bounded memory.
---@param query agentrun.ExportQuery|nil
---@param write fun(line: string)
---@return agentrun.ExportReport
function Store:export(query, write) end

---Reads JSON Lines (as store:export writes them) from read() until it returns nil and stores them;
---runs already in the store are skipped. A bad line raises EJSON "line N: ...", storing nothing of it.
---@param read fun(): string|nil
---@return agentrun.ImportReport
function Store:import(read) end

---Copies every run and event of this store into dest (the export piped into dest's import).
---@param dest agentrun.Store
---@return agentrun.ImportReport
function Store:copy(dest) end

---Writes the selected runs as OTLP/JSON trace export requests, one a run and a line (the body of POST /v1/traces).
---@param query agentrun.ExportQuery|nil
---@param write fun(line: string)
---@param opts? {content?: boolean} content: step content, goal, output and error in span events
---@return {runs: integer, bytes: integer}
function Store:otlp(query, write, opts) end

-- ---------------------------------------------------------------------------
-- The run handle

---A run handle (store:begin, store:resume). Its fields are read-only views.
---Supports `<close>`: closed while running, the run is finished as failed.
---@class agentrun.Run
---@field id string the run's id (time-ordered)
---@field status agentrun.Status the run's status as this handle knows it
---@field iterations integer the number of steps recorded
---@field usage agentrun.Usage the run's totals
---@field budget agentrun.Budget the limits the run has now
---@field created_at integer when the run was begun (ms since the epoch)
---@field response any after resuming a run that waited: the answer it got
local Run = {}

---Appends a step; it is durable when this returns. Never refused for budget reasons.
---@param step agentrun.StepSpec
---@return integer seq
function Run:step(step) end

---Raises agentrun.BudgetExhausted when a limit is reached; call it before starting a step.
function Run:check() end

---Saves a resumable state (any JSON value) after the latest step.
---@param state any
function Run:checkpoint(state) end

---Finishes the run as completed with `output` (any JSON value); returns the final record.
---@param output? any
---@return agentrun.Record
function Run:complete(output) end

---Finishes the run as failed; `err` (any value) gives the error text (records.error_text).
---@param err? any
---@return agentrun.Record
function Run:fail(err) end

---Finishes the run as budget_exhausted with the limit of `err` (or the limit reached now).
---@param err? agentrun.BudgetExhausted|{limit: agentrun.LimitName, limit_value: number, value: number}
---@return agentrun.Record
function Run:exhaust(err) end

---Records durably, before a tool runs, a step {kind = "intent", name, content = {key, args}};
---a key already used in the run raises ESTATE. Returns its seq.
---@param intent {key: string, name: string, args?: any}
---@return integer seq
function Run:intend(intent) end

---Records the outcome of the call intended under `key` as a step {kind = "tool", name,
---content = {intent, key, result[, failed]}}; ESTATE for a key never intended or already settled.
---@param key string
---@param result any
---@param opts? {failed?: boolean}
---@return integer seq
function Run:settle(key, result, opts) end

---Sets the run waiting for a person with `request` (any JSON value; a step {kind = "wait"}) and
---releases the handle: its further writes raise ESTATE. Returns the waiting run's record.
---@param request any
---@return agentrun.Record
function Run:wait(request) end

---Releases the handle; a run still running is finished as failed ("run closed before it finished").
function Run:close() end

-- ---------------------------------------------------------------------------
-- The loop context

---What agentrun.loop hands its step function.
---@class agentrun.LoopContext
---@field run agentrun.Run the run being recorded
---@field steps agentrun.Step[] the transcript so far, in order (after a resume: from the first step)
---@field usage agentrun.Usage the run's totals before this call
---@field iteration integer the number of the step about to be made (1 in the first call)
---@field checkpoint any the latest saved state (nil if none)
---@field pending agentrun.Intent[] after a resume: the run's intents never settled (their call was cut off)
---@field response any after resuming a run that waited: the answer it got
local LoopContext = {}

---Calls fn(args) at most once per key in the run: returns the recorded result of a settled key
---(fn not called); otherwise intends, calls fn(args), settles with its result (or as failed with
---its error, raised again) and returns it. A pending key goes to spec.on_pending when given.
---@param key string
---@param name string
---@param args any
---@param fn fun(args: any): any
---@return any result
function LoopContext:tool(key, name, args, fn) end

---Records a step (retrying EBUSY/EIO/EFULL); it is added to ctx.steps. Returns its seq.
---@param step agentrun.StepSpec
---@return integer seq
function LoopContext:record(step) end

---Saves a resumable state after the latest step (ctx.checkpoint becomes it).
---@param state any
function LoopContext:save(state) end

---Sets the run waiting for a person with `request` and ends the loop, which returns the record
---of the waiting run. Does not return.
---@param request any
function LoopContext:wait(request) end

-- ---------------------------------------------------------------------------
-- Tables given to the API

---Options of agentrun.open.
---@class agentrun.OpenOptions
---@field durability? "full"|"normal" "full" (default): a step survives power loss; "normal": a process crash
---@field busy_timeout? integer ms a call waits for another writer before EBUSY (default 5000)
---@field readonly? boolean open for reading only; every write raises EPERM
---@field schema? string PostgreSQL only: the schema holding the store, an identifier (default "agentrun")

---What store:begin takes.
---@class agentrun.RunSpec
---@field agent string the agent's name (required, non-empty)
---@field goal string the task or input (required)
---@field user? string who the run is for
---@field edition? string which version or configuration of the agent
---@field parent? string the parent run's id (for sub-agents)
---@field metadata? table a JSON object of the caller's (tags...)
---@field budget? agentrun.Budget the run's limits

---Budget limits; each is optional (no limit when absent) and checked by run:check().
---@class agentrun.Budget
---@field max_steps? integer steps (in a loop: calls of the step function), 0..2^53
---@field max_input_tokens? integer input tokens, 0..2^53
---@field max_output_tokens? integer output tokens, 0..2^53
---@field max_tokens? integer input + output tokens, 0..2^53
---@field max_cost? number cost, 0..9e9
---@field max_seconds? number seconds the run has been open, 0..1e12

---What agentrun.loop takes: a run spec, or `resume` = the id of a run to continue.
---@class agentrun.LoopSpec
---@field agent? string the agent's name (required unless resume)
---@field goal? string the task or input (required unless resume)
---@field user? string who the run is for
---@field edition? string which version or configuration of the agent
---@field parent? string the parent run's id
---@field metadata? table a JSON object of the caller's
---@field budget? agentrun.Budget the run's limits (with resume: its new budget)
---@field resume? string resume this run instead of beginning one
---@field fork? {run: string, at?: integer} run a fork of this run after step `at` (store:fork)
---@field retries? integer retries of a store failure that may pass (EBUSY, EIO, EFULL); default 3
---@field on_pending? fun(ctx: agentrun.LoopContext, intent: agentrun.Intent): any asked by ctx:tool for a key cut off by a crash; its return value is settled as the result

---A step given to run:step or ctx:record.
---@class agentrun.StepSpec
---@field kind string what happened: "llm", "tool", "thought", ... (required, non-empty)
---@field name? string the tool or model name
---@field content? any any JSON value
---@field usage? agentrun.StepUsage tokens and other counters
---@field cost? number the step's cost, 0..9e9, kept to the nano-unit
---@field duration_ms? integer how long it took, >= 0

---A step's counters: input and output tokens and any other non-negative integer counters.
---@class agentrun.StepUsage
---@field input_tokens? integer 0..2^53
---@field output_tokens? integer 0..2^53
---@field total_tokens? integer if given, must equal input_tokens + output_tokens
---@field [string] integer other counters (e.g. cache_read_tokens), 0..2^53 each

---A step inside a record given to store:write or the record factory.
---@class agentrun.RecordStep: agentrun.StepSpec
---@field seq? integer if given, its position: steps number 1..n in order
---@field at? integer when it happened (ms); default the record's finished_at

---What store:write takes: a finished record, e.g. from the record factory or store:get.
---@class agentrun.RecordInput
---@field id? string keep this id (a valid agentrun id not in the store); default a new one
---@field agent string the agent's name (required)
---@field goal string the task or input (required)
---@field status agentrun.FinalStatus (required)
---@field user? string who the run was for
---@field edition? string which version or configuration of the agent
---@field parent? string the parent run's id
---@field output? any a completed run's output (any JSON value)
---@field error? string a failed run's error text (never refused)
---@field limit? agentrun.Limit a budget_exhausted run's limit
---@field budget? agentrun.Budget the run's limits
---@field iterations? integer if given, must be the number of steps
---@field usage? agentrun.Usage if given, must be the sums of the steps
---@field latency_ms? integer if given, must be finished_at - created_at
---@field created_at? integer ms; default the id's time, or now
---@field finished_at? integer ms; default now
---@field updated_at? integer ms, not before finished_at; default finished_at
---@field metadata? table a JSON object
---@field steps? agentrun.RecordStep[] the transcript, in order
---@field checkpoint? agentrun.CheckpointInput a checkpoint to write with the run
---@field forked_from? {run: string, seq: integer} a fork's origin
---@field request? any what a run that waited asked (required for a waiting record)
---@field response? any the answer it got

---A checkpoint written with a record.
---@class agentrun.CheckpointInput
---@field state any the saved state (required; any JSON value)
---@field seq? integer the step it follows, 0..#steps; default the last step

---What the record factory (agentrun.records.*) takes.
---@class agentrun.RecordFields
---@field id? string keep this id
---@field agent string the agent's name (required)
---@field goal string the task or input (required)
---@field user? string who the run was for
---@field edition? string which version or configuration of the agent
---@field parent? string the parent run's id
---@field metadata? table a JSON object
---@field budget? agentrun.Budget the run's limits
---@field steps? agentrun.RecordStep[] the transcript, in order
---@field output? any the output (records.completed only)
---@field created_at? integer ms; default now
---@field finished_at? integer ms; default now
---@field usage? agentrun.Usage if given, must be the sums of the steps
---@field iterations? integer if given, must be the number of steps
---@field checkpoint? agentrun.CheckpointInput a checkpoint to write with the run

---Options of store:get.
---@class agentrun.GetOptions
---@field steps? boolean include the transcript as record.steps

---Options of store:steps.
---@class agentrun.StepsOptions
---@field from? integer the first seq (inclusive, >= 1; default 1)
---@field limit? integer at most this many steps (default all)
---@field raw? boolean each content as its stored JSON text, in `content_json`, not decoded

---A runs query (store:runs, count, stats); every filter is optional.
---@class agentrun.RunQuery
---@field agent? string this agent's runs
---@field user? string this user's runs
---@field status? agentrun.Status|agentrun.Status[] one status or a list of 1..16
---@field edition? string this edition's runs
---@field parent? string the runs with this parent
---@field forked_from? string the forks of this run
---@field since? integer created_at >= since (ms)
---@field until? integer created_at < until (ms)
---@field limit? integer page size (default 50; 0 gives an empty page)
---@field after? string a next_cursor: the runs that follow it
---@field before? string a cursor: the `limit` runs that precede it
---@field order? "desc"|"asc" by created_at then id; default "desc" (newest first)

---Options of store:fork.
---@class agentrun.ForkOptions
---@field at? integer the last step copied, 0..iterations (default: the run's last step)
---@field budget? agentrun.Budget the fork's limits (default: the run's)
---@field metadata? table replaces the run's metadata

---Options of store:resume.
---@class agentrun.ResumeOptions
---@field budget? agentrun.Budget replaces the run's budget as a whole

---Options of store:recover.
---@class agentrun.RecoverOptions
---@field stale_after number seconds without activity (required, >= 0)

---An event given to store:event.
---@class agentrun.EventSpec
---@field agent string the agent's name (required)
---@field type string "prompt_sent", "output", "tool_use", ... (required)
---@field session? integer >= 0; default 0
---@field content? string text (NUL bytes kept)
---@field metadata? table a JSON object; default {}
---@field run? string a run id it belongs to
---@field at? integer ms; default now

---An events query (store:events, count_events).
---@class agentrun.EventQuery
---@field agent string the agent (required)
---@field session? integer this session's events
---@field type? string|string[] one type or a list of 1..1000
---@field since? integer at >= since (ms)
---@field until? integer at < until (ms)
---@field limit? integer page size (default 100; 0 gives an empty page)
---@field after? string a next_cursor: the events that follow it
---@field before? string a cursor: the `limit` events that precede it
---@field order? "asc"|"desc" by id; default "asc" (oldest first)

---The filters of store:export and store:otlp (every matching run is written, in id order).
---@class agentrun.ExportQuery
---@field agent? string
---@field user? string
---@field status? agentrun.Status|agentrun.Status[]
---@field edition? string
---@field parent? string
---@field since? integer created_at >= since (ms)
---@field until? integer created_at < until (ms)

---What store:export returns.
---@class agentrun.ExportReport
---@field runs integer run lines written
---@field events integer event lines written
---@field bytes integer bytes written, line breaks included

---What store:import and store:copy return.
---@class agentrun.ImportReport
---@field runs integer runs imported
---@field events integer events imported
---@field skipped integer runs already there (by id), and events already there (the same event, same id)
---@field lines integer lines read

---What store:retain_events takes.
---@class agentrun.EventRetention
---@field older_than? number delete events older than this many seconds (by at)
---@field keep_last? integer keep each agent's newest this many events (by at, then id)

---A retention policy (store:retain; also what agentrun.policy returns).
---@class agentrun.RetentionPolicy
---@field older_than? number delete runs finished longer ago than this many seconds
---@field keep_last? integer keep each agent's newest this many finished runs (by created_at, then id)
---@field status? agentrun.FinalStatus|agentrun.FinalStatus[] consider only these statuses
---@field rule? fun(run: agentrun.RuleRun): agentrun.Verdict called once per considered run
---@field dry_run? boolean report what would be deleted; delete nothing
---@field vacuum? boolean give freed pages back to the file system afterwards

-- ---------------------------------------------------------------------------
-- Tables the API returns

---The one uniform record of a run (store:get, runs, the finishes, the loop, the factory).
---@class agentrun.Record
---@field id string the run's id (a factory record has none until written, unless given)
---@field agent string the agent's name
---@field goal string the task or input
---@field user? string who the run is for
---@field edition? string which version or configuration of the agent
---@field parent? string the parent run's id
---@field status agentrun.Status
---@field output? any a completed run's output, read back as given
---@field error? string a failed run's error text
---@field limit? agentrun.Limit a budget_exhausted run's limit
---@field budget agentrun.Budget the limits the run has
---@field iterations integer the number of steps
---@field usage agentrun.Usage the run's totals
---@field latency_ms? integer finished_at - created_at (finished runs)
---@field created_at integer ms
---@field finished_at? integer ms (finished runs)
---@field updated_at integer ms of the latest write
---@field metadata table a JSON object ({} when none was given)
---@field steps? agentrun.Step[] the transcript, when asked for
---@field checkpoint? {state: any, seq: integer} a factory record's checkpoint, when given
---@field forked_from? {run: string, seq: integer} a fork: the run and the step it was forked after
---@field request? any a run that waited: what it asked
---@field response? any the answer it got (absent until given)

---Which limit a budget_exhausted run reached.
---An intent and its outcome (store:intents, ctx.pending).
---@class agentrun.Intent
---@field key string
---@field name string the tool's name
---@field args any
---@field status "pending"|"settled"|"failed"
---@field result any the outcome (nil while pending)
---@field intent_seq integer the intent step
---@field result_seq? integer the tool step (nil while pending)

---@class agentrun.Limit
---@field name agentrun.LimitName the limit
---@field value number the limit's value
---@field reached? number the figure that reached it (default value)

---A step as read back.
---@class agentrun.Step
---@field seq integer 1, 2, 3... within the run
---@field kind string
---@field name? string
---@field content? any read back as given
---@field content_json? string the content's JSON text, from store:steps(id, {raw = true}) only
---@field usage agentrun.StepUsage input_tokens, output_tokens, total_tokens and its counters
---@field cost number
---@field duration_ms integer
---@field at integer ms

---A run's totals (also record.usage and BudgetExhausted.usage).
---@class agentrun.Usage
---@field input_tokens integer
---@field output_tokens integer
---@field total_tokens integer always input_tokens + output_tokens
---@field cost number exact to the nano-unit
---@field [string] integer other counters, summed

---What store:info returns.
---@class agentrun.Info
---@field backend "sqlite"|"postgresql" the backend that serves the store
---@field path string the location given to open (a URL without its password)
---@field schema_version integer the store's schema (2)
---@field runs integer
---@field steps integer
---@field events integer
---@field file_bytes integer the file's size (the pages of a :memory: store); 0 where the backend has no such size
---@field wal_bytes integer the write-ahead log's size; 0 where the backend has none
---@field free_bytes integer free pages inside the file; 0 where the backend has none

---What store:check returns.
---@class agentrun.CheckReport
---@field ok boolean true when no problem was found
---@field runs integer runs read
---@field steps integer steps read
---@field checkpoints integer checkpoints read
---@field events integer events read
---@field problems agentrun.CheckProblem[] what is damaged, in the order found

---A problem store:check found.
---@class agentrun.CheckProblem
---@field kind "file"|"run"|"step"|"checkpoint"|"event"
---@field id? string|integer the run's id (run, step, checkpoint; absent when the id is the damage), or the event's id
---@field key? integer the run's key in the store (its id's tick)
---@field seq? integer a step's seq
---@field field? string the first damaged field of the row
---@field message string what is wrong, naming the row and the field

---What store:stats returns.
---@class agentrun.Stats
---@field runs integer
---@field by_status agentrun.StatusCounts runs per status
---@field iterations integer steps, summed
---@field input_tokens integer
---@field output_tokens integer
---@field total_tokens integer
---@field cost number
---@field avg_latency_ms number the unrounded mean latency of finished runs (0 when none)

---Runs per status.
---@class agentrun.StatusCounts
---@field running integer
---@field completed integer
---@field budget_exhausted integer
---@field failed integer
---@field interrupted integer
---@field waiting integer

---An event as read back.
---@class agentrun.Event
---@field id integer increasing, never reused
---@field agent string
---@field session integer
---@field type string
---@field content? string
---@field metadata table a JSON object
---@field run? string
---@field at integer ms

---What store:event_summary returns.
---@class agentrun.EventSummary
---@field total integer the agent's events
---@field by_type table<string, integer> events per type
---@field sessions integer the number of distinct sessions
---@field first_at? integer the oldest event's at (absent without events)
---@field last_at? integer the newest event's at (absent without events)

---What store:retain returns.
---@class agentrun.RetentionReport
---@field considered integer finished runs within the status filter
---@field deleted integer runs deleted (in a dry run: that would be)
---@field kept_by_rule integer the rule's "keep" verdicts
---@field deleted_by_rule integer the rule's "delete" verdicts
---@field steps_deleted integer steps that went with them
---@field bytes_before integer file plus WAL before
---@field bytes_after integer file plus WAL after
---@field dry_run boolean

---What a retention rule is called with: a record without steps, plus its age.
---@class agentrun.RuleRun: agentrun.Record
---@field age number seconds since finished_at

---The error object of every store failure, bad JSON, wrong state...: `tostring(e)` reads "agentrun: CODE: message".
---@class agentrun.Error
---@field code agentrun.ErrorCode
---@field message string
---@field steps? agentrun.Step[] raised by agentrun.loop: the whole transcript in memory, unwritten steps included

---What run:check() raises when a limit is reached: `tostring(e)` reads "agentrun: EBUDGET: message".
---@class agentrun.BudgetExhausted
---@field code "EBUDGET"
---@field message string
---@field limit agentrun.LimitName the limit that was reached
---@field limit_value number the limit (an integer for counts)
---@field value number the figure that reached it, in the limit's unit
---@field run_id string
---@field iterations integer
---@field usage agentrun.Usage
---@field steps agentrun.Step[] the partial transcript, in order (after a resume: the whole one)

return agentrun
