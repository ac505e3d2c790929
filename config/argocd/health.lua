-- Argo CD health check of a backstop.dev Rollout: the value of the argocd-cm
-- key resource.customizations.health.backstop.dev_Rollout
-- (docs/argocd-health.md). It uses no library Argo CD leaves closed.

local waiting = { status = "Progressing", message = "Waiting for the Rollout to be observed" }
if obj.status == nil then
  return waiting
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  return waiting
end

local function condition(type)
  if obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local ready = condition("Ready")
local stalled = condition("Stalled")
local phase = obj.status.phase
local message = ""
if ready ~= nil and ready.message ~= nil then
  message = ready.message
end

-- An invalid spec, or a release that was rolled back: a person must act.
if stalled ~= nil and stalled.status == "True" then
  return { status = "Degraded", message = stalled.message }
end
if phase == "RolledBack" then
  return { status = "Degraded", message = message }
end

if phase == "Idle" or phase == "Succeeded" then
  if ready ~= nil and ready.status == "True" then
    return { status = "Healthy", message = message }
  end
  -- A rejected route, a failed action or a missing object.
  return { status = "Progressing", message = message }
end

-- Paused waits for a person: spec.paused, a pause step without a duration,
-- a promotion, or an inconclusive analysis. A timed pause is Progressing.
if phase == "Paused" and ready ~= nil and ready.reason == "Paused" then
  if obj.spec ~= nil and obj.spec.paused == true then
    return { status = "Suspended", message = message .. " (spec.paused is true)" }
  end
  return { status = "Suspended", message = message .. "; waiting to be promoted or aborted" }
end

-- Initializing, Progressing, Promoting, RollingBack, a Paused release whose
-- route is rejected or whose action failed, and a Rollout waiting for a
-- missing object before its first phase.
return { status = "Progressing", message = message }
