-- Argo CD health for rampart.dev/HardenedService, read from its kstatus conditions.
-- Lua 5.1 (Argo CD runs gopher-lua). Install: see gitops/argocd/README.md.
local hs = {}
local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Rampart operator"
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil
    and (obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Rampart operator to see the latest spec"
  return hs
end

local stalled = condition("Stalled")
local ready = condition("Ready")
local reconciling = condition("Reconciling")
if stalled ~= nil and stalled.status == "True" then
  -- An invalid spec, a missing Secret, or a canary rolled back: what Git asks for is not running.
  hs.status = "Degraded"
  hs.message = (stalled.reason or "Stalled") .. ": " .. (stalled.message or "")
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end
hs.status = "Progressing"
if reconciling ~= nil and reconciling.message ~= nil then
  hs.message = reconciling.message
elseif ready ~= nil and ready.message ~= nil then
  hs.message = ready.message
else
  hs.message = "Waiting for the Rampart operator"
end
if obj.status.canary ~= nil and obj.status.canary.weight ~= nil and obj.status.canary.weight > 0 then
  hs.message = hs.message .. " (canary at " .. obj.status.canary.weight .. "%)"
end
return hs
