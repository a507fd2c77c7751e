-- Argo CD health check for evergreen.dev/ModelMonitor (Lua 5.1, as Argo CD runs it).
--
-- Degraded    the monitor cannot do its job (invalid spec, Prometheus unreadable, queries
--             rejected, decision Unknown: it cannot judge its model) or the model needs people:
--             Escalate, HoldForDataQuality, a KPI breached
-- Suspended   a rollout gate waits for approval, or mode: Observe (decides, does not act)
-- Progressing not evaluated since the last spec change, baselines still warming up (Unknown
--             with reason BaselineNotReady), a rollout or retraining run under way
-- Healthy     everything else; the message carries the decision and its reason
--
-- The checks run in the order below: the current spec is judged first (a spec fixed since the
-- last evaluation is Progressing, not Degraded), and a breached KPI in Observe mode is still
-- Degraded.

local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.type .. " " .. tostring(c.reason)
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local function decision_text(decision)
  local text = decision.action .. " (" .. tostring(decision.reason) .. ")"
  if decision.message ~= nil and decision.message ~= "" then
    text = text .. ": " .. decision.message
  end
  return text
end

local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the first evaluation"
  return hs
end

local ready = condition(status, "Ready")
local generation = obj.metadata and obj.metadata.generation

-- 1. Progressing: nothing has judged the current spec yet (a fixed spec is not Degraded).
if ready == nil or (generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the evaluation of generation " .. tostring(generation)
  return hs
end

-- 2. Degraded: the monitor is broken or cannot judge its model, or the model needs a person.
--    A baseline still warming up is not broken: it is judged in step 3.
local warming = ready.status == "False" and ready.reason == "BaselineNotReady"
if ready.status == "False" and not warming then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end
local decision = status.decision
if decision ~= nil and (decision.action == "Escalate" or decision.action == "HoldForDataQuality"
    or (decision.action == "Unknown" and decision.reason ~= "BaselineNotReady")) then
  hs.status = "Degraded"
  hs.message = decision_text(decision)
  return hs
end
local kpi = condition(status, "KPIBreached")
if kpi ~= nil and kpi.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(kpi)
  return hs
end

-- 3. Progressing: baselines are still filling; the model is judged once they hold enough.
if decision ~= nil and decision.action == "Unknown" then
  hs.status = "Progressing"
  hs.message = decision_text(decision)
  return hs
end
if warming then
  hs.status = "Progressing"
  hs.message = describe(ready)
  return hs
end

-- 4. Suspended: waiting for a person, or deciding without acting.
local rollout = condition(status, "Rollout")
if rollout ~= nil and rollout.status == "True"
    and (rollout.reason == "AwaitingApproval" or rollout.reason == "AwaitingPromotion") then
  hs.status = "Suspended"
  hs.message = describe(rollout)
  return hs
end
if obj.spec ~= nil and obj.spec.mode == "Observe" then
  hs.status = "Suspended"
  hs.message = "Observe mode: decisions are explained, not enforced"
  if decision ~= nil then
    hs.message = hs.message .. "; " .. decision_text(decision)
  end
  return hs
end

-- 5. Progressing: a rollout or a retraining run is under way.
if rollout ~= nil and rollout.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(rollout)
  return hs
end
local retraining = condition(status, "Retraining")
if retraining ~= nil and retraining.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(retraining)
  return hs
end

hs.status = "Healthy"
if decision ~= nil then
  hs.message = decision_text(decision)
else
  hs.message = describe(ready)
end
return hs
