//! Every scenario, in the order they run.

use crate::{Needs, ScenarioFn};

mod accounts;
mod admission;
mod cli;
mod cluster_life;
mod credentials_requests;
mod doctor;
mod drift;
mod escapes;
mod faults;
mod iam_identity;
mod iam_work;
mod image;
mod leadership;
mod lifecycle;
mod migration;
mod monitoring;
mod oidc;
mod ownership;
mod pod_identity;
mod pods;
mod policies;
mod races;
mod readiness;
mod reading;
mod sharing;
mod steady;

macro_rules! scenario {
    ($module:ident :: $name:ident, $needs:expr) => {
        (
            concat!(stringify!($module), "::", stringify!($name)),
            $needs,
            (|s| Box::pin($module::$name(s))) as ScenarioFn,
        )
    };
}

pub fn all() -> Vec<(&'static str, Needs, ScenarioFn)> {
    use Needs::{Cluster, OwnControlPlane};
    vec![
        scenario!(lifecycle::create_wait_update_delete, Cluster),
        scenario!(lifecycle::retain_keeps_the_role_untagged, Cluster),
        scenario!(lifecycle::credentials_secret_in_ccoctl_format, Cluster),
        scenario!(
            iam_identity::legacy_names_are_kept_and_other_clusters_roles_refused,
            Cluster
        ),
        scenario!(lifecycle::a_role_that_is_not_ours_is_a_conflict, Cluster),
        scenario!(lifecycle::guardrail_refusals_change_nothing_in_iam, Cluster),
        scenario!(lifecycle::the_api_server_enforces_the_schema, Cluster),
        scenario!(escapes::what_the_adversarial_pass_found_is_refused, Cluster),
        scenario!(
            admission::bindings_are_judged_at_admission_for_their_author,
            Cluster
        ),
        scenario!(
            pod_identity::a_binding_gets_its_association_trust_and_no_irsa_annotation,
            Cluster
        ),
        scenario!(
            pod_identity::a_foreign_association_is_refused_and_retain_keeps_ours,
            Cluster
        ),
        scenario!(
            pod_identity::a_policy_requiring_pod_identity_refuses_irsa_with_no_write,
            Cluster
        ),
        scenario!(
            migration::a_deployment_moves_to_pod_identity_and_back_with_trust_for_every_pod,
            Cluster
        ),
        scenario!(
            pod_identity::the_association_quota_refuses_before_any_call,
            Cluster
        ),
        scenario!(
            pod_identity::an_association_deleted_by_hand_is_made_again,
            Cluster
        ),
        scenario!(
            accounts::bindings_in_two_accounts_get_their_roles_there,
            Cluster
        ),
        scenario!(
            accounts::a_policy_naming_an_unknown_account_refuses_with_no_iam_write,
            Cluster
        ),
        scenario!(
            accounts::one_throttled_account_leaves_the_others_at_their_pace,
            Cluster
        ),
        scenario!(
            accounts::each_placed_account_gets_the_oidc_provider,
            Cluster
        ),
        scenario!(
            accounts::a_namespace_moved_between_accounts_keeps_every_pod_on_a_role_that_exists,
            Cluster
        ),
        scenario!(policies::two_teams_confined_by_one_policy, Cluster),
        scenario!(
            policies::a_revoking_policy_takes_permissions_and_gives_them_back,
            Cluster
        ),
        scenario!(
            drift::ready_with_bindings_present_and_drift_put_back,
            Cluster
        ),
        scenario!(drift::a_role_deleted_by_hand_is_made_again, Cluster),
        scenario!(sharing::one_owner_no_fight_and_a_hand_over, OwnControlPlane),
        scenario!(races::finalizer_races_are_not_errors, Cluster),
        scenario!(
            iam_work::three_calls_when_created_while_the_controller_was_down,
            Cluster
        ),
        scenario!(
            iam_work::a_managed_policy_that_does_not_exist_is_the_users_to_fix,
            Cluster
        ),
        scenario!(
            iam_work::kill_9_between_calls_converges_to_one_role,
            Cluster
        ),
        scenario!(iam_work::throttling_and_5xx_still_converge, Cluster),
        scenario!(
            cluster_life::short_form_bindings_follow_their_service_account,
            Cluster
        ),
        scenario!(
            cluster_life::deleting_a_namespace_cleans_up_its_roles,
            Cluster
        ),
        scenario!(pods::the_api_server_calls_the_webhook, OwnControlPlane),
        scenario!(
            pods::a_token_from_the_api_server_matches_the_trust_policy,
            Cluster
        ),
        scenario!(
            leadership::one_writer_through_kill_stop_and_partition,
            OwnControlPlane
        ),
        scenario!(
            ownership::annotations_follow_the_spec_and_the_account,
            Cluster
        ),
        scenario!(ownership::a_service_account_it_created_stays_owned, Cluster),
        scenario!(ownership::only_its_own_secret, Cluster),
        scenario!(
            reading::an_unreadable_binding_stops_nothing_else,
            OwnControlPlane
        ),
        scenario!(
            reading::the_webhook_cache_holds_metadata_and_looks_again,
            Cluster
        ),
        scenario!(iam_identity::a_path_change_is_reported_not_looped, Cluster),
        scenario!(
            iam_identity::a_role_outside_the_path_is_a_conflict_and_denials_wait,
            Cluster
        ),
        scenario!(readiness::ready_only_after_sts_exchanged_a_token, Cluster),
        scenario!(readiness::pods_that_started_early_get_one_rollout, Cluster),
        scenario!(doctor::each_broken_link_is_found_on_a_real_cluster, Cluster),
        scenario!(
            doctor::a_pod_identity_binding_is_judged_on_its_own_chain,
            Cluster
        ),
        scenario!(
            doctor::the_api_servers_own_discovery_is_read_as_sts_reads_it,
            OwnControlPlane
        ),
        scenario!(
            credentials_requests::openshift_requests_become_roles_and_ccoctl_secrets,
            Cluster
        ),
        scenario!(
            monitoring::the_dashboard_and_alerts_query_only_metrics_the_operator_exports,
            Cluster
        ),
        scenario!(
            cli::kubectl_podidentity_status_lists_bindings_as_the_cluster_holds_them,
            Cluster
        ),
        scenario!(
            image::the_controller_from_the_image_runs_as_its_user_and_makes_a_role,
            Cluster
        ),
        scenario!(steady::an_idle_operator_writes_nothing, OwnControlPlane),
        scenario!(
            faults::restarts_of_the_api_server_and_etcd_lose_and_duplicate_nothing,
            OwnControlPlane
        ),
        scenario!(
            faults::changes_while_the_watches_were_down_are_acted_on_after_the_relist,
            OwnControlPlane
        ),
        scenario!(
            faults::the_webhook_answers_from_its_cache_while_the_api_server_is_down,
            OwnControlPlane
        ),
        // Last: it restarts the API server, which then no longer trusts the first key.
        scenario!(
            oidc::provider_and_keys_kept_through_a_key_rotation,
            OwnControlPlane
        ),
    ]
}
