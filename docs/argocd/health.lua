-- Argo CD health check for podidentity.io/PodIdentityBinding.
-- Install it under resource.customizations.health.podidentity.io_PodIdentityBinding
-- in argocd-cm (see docs/gitops.md). It reads the kstatus conditions the operator writes.
local hs = {}
if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deleting: cleaning up the IAM role"
  return hs
end
if obj.status ~= nil and obj.status.conditions ~= nil then
  local ready, stalled, reconciling
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then ready = condition end
    if condition.type == "Stalled" then stalled = condition end
    if condition.type == "Reconciling" then reconciling = condition end
  end
  local generation = obj.metadata ~= nil and obj.metadata.generation or nil
  local observed = obj.status.observedGeneration
  if generation ~= nil and observed ~= nil and observed < generation then
    hs.status = "Progressing"
    hs.message = "Waiting for the operator to act on generation " .. generation
    return hs
  end
  if stalled ~= nil and stalled.status == "True" then
    hs.status = "Degraded"
    hs.message = stalled.reason .. ": " .. (stalled.message or "")
    return hs
  end
  if ready ~= nil and ready.status == "True" then
    hs.status = "Healthy"
    hs.message = "Ready"
    return hs
  end
  if reconciling ~= nil and reconciling.status == "True" then
    hs.status = "Progressing"
    hs.message = reconciling.reason .. ": " .. (reconciling.message or "")
    return hs
  end
  if ready ~= nil then
    hs.status = "Degraded"
    hs.message = ready.reason .. ": " .. (ready.message or "")
    return hs
  end
end
hs.status = "Progressing"
hs.message = "Waiting for the operator"
return hs
